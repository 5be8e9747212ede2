package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestWebhookCommand: add takes the URL before its flags, prints the
// secret once on stdout; list shows the filter; a URL that is not http(s)
// and bad filters are refused with the reason; remove and enable name a
// webhook by its id.
func TestWebhookCommand(t *testing.T) {
	url, _ := openStore(t)
	run := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := webhookCmd(append(args, "--database-url", url, "--log-level", "error"), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	secret, note, err := run("add", "https://hooks.example/op25b", "--country", "jp", "--family", "ipv4")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") || !strings.Contains(note, "added webhook 1 for JP ipv4 changes") {
		t.Errorf("add printed %q and %q; want the secret on stdout and the id and filter on stderr", secret, note)
	}
	if _, _, err := run("add", "--asn", "AS64500", "http://127.0.0.1:8080/"); err != nil {
		t.Fatal(err)
	}
	list, _, err := run("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"https://hooks.example/op25b  JP ipv4", "http://127.0.0.1:8080/", "AS64500", "enabled"} {
		if !strings.Contains(list, want) {
			t.Errorf("list:\n%s\nwant it to show %q", list, want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "mailto:abuse@example.net"}, `want an http:// or https:// URL, not "mailto:"`},
		{[]string{"add", "https://hooks.example/", "--country", "Japan"}, "--country"},
		{[]string{"add", "https://hooks.example/", "--family", "ipv5"}, "--family"},
		{[]string{"add"}, "usage"},
		{[]string{"remove", "x"}, "want the number webhook list shows"},
		{[]string{"remove", "7"}, "no webhook 7"},
		{[]string{"enable", "1", "--asn", "1"}, "for webhook add"},
		{[]string{"disable", "1"}, "unknown subcommand"},
	} {
		if _, _, err := run(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("webhook %q: %v; want an error with %q", c.args, err, c.want)
		}
	}
	if _, _, err := run("enable", "1"); err != nil {
		t.Errorf("enable 1: %v", err)
	}
	if _, _, err := run("remove", "1"); err != nil {
		t.Errorf("remove 1: %v", err)
	}
	if list, _, _ := run("list"); strings.Contains(list, "hooks.example") {
		t.Errorf("list after remove:\n%s", list)
	}
}
