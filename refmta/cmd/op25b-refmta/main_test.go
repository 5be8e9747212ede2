package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"testing"

	"github.com/op25b/observatory/internal/flagenv"
	"github.com/op25b/observatory/refmta/smtpd"
)

func TestParsePorts(t *testing.T) {
	got, err := parsePorts("25, 587,465,2525:submission")
	if err != nil {
		t.Fatal(err)
	}
	want := []port{{25, smtpd.SMTP}, {587, smtpd.Submission}, {465, smtpd.SMTPS}, {2525, smtpd.Submission}}
	if !slices.Equal(got, want) {
		t.Errorf("parsePorts = %v; want %v", got, want)
	}
	for _, bad := range []string{"", "25,", "0", "70000", "25:pop3", "443:control", "x"} {
		if _, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q) succeeded; want error", bad)
		}
	}
}

func TestDocument(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	o := options{listen: flagenv.List{"0.0.0.0", "192.0.2.25", "[2001:db8::25]", "::ffff:198.51.100.1"}, controlPort: 443, hostname: "mx.example"}
	doc, err := document(o, key, []port{{25, smtpd.SMTP}, {465, smtpd.SMTPS}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.25", "2001:db8::25", "198.51.100.1"}; !slices.Equal(doc.Addresses, want) {
		t.Errorf("addresses = %v; want %v (unspecified dropped, mapped unmapped)", doc.Addresses, want)
	}
	if !slices.Equal(doc.Ports, []uint32{25, 465}) || !slices.Equal(doc.ImplicitTlsPorts, []uint32{465}) || doc.ControlPort != 443 || len(doc.Id) != len("refmta-")+16 {
		t.Errorf("document = %v", doc)
	}
	o.listen = flagenv.List{"not-an-ip"}
	if _, err := document(o, key, nil); err == nil {
		t.Errorf("document with --listen not-an-ip succeeded")
	}
}
