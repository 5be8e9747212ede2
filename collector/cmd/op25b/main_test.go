package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient/datasetclienttest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// query runs a command against a fake collector and wants it to succeed
// quietly.
func query(t *testing.T, s *datasetclienttest.Server, args ...string) string {
	t.Helper()
	code, out, errOut := runCmd(t, append(args, "--collector", s.URL)...)
	if code != exitOK || errOut != "" {
		t.Fatalf("op25b %q = %d, stderr %q; want 0 and nothing on stderr", args, code, errOut)
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestASNsTable(t *testing.T) {
	s := datasetclienttest.Start(t)
	out := query(t, s, "asns")
	golden(t, "asns.golden", out)
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests for 7 rows in pages of 3; want 3 (every page followed)", n)
	}
	for _, line := range strings.Split(out, "\n") {
		if n := len([]rune(line)); n > maxWidth {
			t.Errorf("line of %d columns, more than %d: %q", n, maxWidth, line)
		}
	}
}

func TestASNsSortAndFilter(t *testing.T) {
	s := datasetclienttest.Start(t)
	out := query(t, s, "asns", "--country", "jp", "--sort", "blocked", "--family", "ipv4", "--window", "7d")
	var order []string
	for _, line := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "AS") {
			order = append(order, f[0])
		}
	}
	if got := strings.Join(order, " "); got != "AS64502 AS64500 AS64501" {
		t.Errorf("asns --sort blocked order %q; want AS64502 (100%%) AS64500 (91%%) AS64501 (6%%)", got)
	}
	if got, want := s.Requests()[0], "/api/v1/asns?country=JP&family=ipv4&window=7d"; got != want {
		t.Errorf("request %q; want %q", got, want)
	}
	if !strings.Contains(out, "window 2026-03-06 to 2026-03-12 (UTC)") {
		t.Errorf("asns output does not give the window:\n%s", out)
	}
}

func TestASNsCSVAndJSON(t *testing.T) {
	s := datasetclienttest.Start(t)
	recs, err := csv.NewReader(strings.NewReader(query(t, s, "asns", "--format", "csv", "--class", "op25b"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"64500", "Example Broadband", "JP", "ipv4", "OP25B", "131", "44", "0.9091", "0.7884", "0.9641",
		"0.9767", "0.8794", "0.9959", "1.0000", "0.9180", "1.0000", "2026-02-11", "2026-03-13"}
	if len(recs) != 2 || strings.Join(recs[1], ",") != strings.Join(want, ",") {
		t.Errorf("asns --format csv = %q; want the header and %q", recs, want)
	}
	var r pb.ListASNsResponse
	if err := protojson.Unmarshal([]byte(query(t, s, "asns", "--format", "json")), &r); err != nil || len(r.Asns) != 7 {
		t.Errorf("asns --format json: %d summaries, %v; want all 7 in one ListASNsResponse", len(r.Asns), err)
	}
}

func TestASN(t *testing.T) {
	s := datasetclienttest.Start(t)
	golden(t, "asn.golden", query(t, s, "asn", "AS64500"))
	// Both families measured, none asked for: one request has both
	// timelines (the golden file shows them).
	want := []string{"/api/v1/asns/64500"}
	if got := s.Requests(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requests %q; want %q", got, want)
	}
	golden(t, "asn-evidence.golden", query(t, s, "asn", "64501", "--family", "ipv4", "--window", "14d"))
}

func TestPeers(t *testing.T) {
	s := datasetclienttest.Start(t)
	golden(t, "peers.golden", query(t, s, "peers", "AS64500"))
}

func TestPrefixes(t *testing.T) {
	s := datasetclienttest.Start(t)
	out := query(t, s, "prefixes", "AS64500")
	golden(t, "prefixes.golden", out)
	if want := []string{"/api/v1/asns/64500/prefixes", "/api/v1/asns/64500/prefixes?page_token=offset-3"}; !slices.Equal(s.Requests(), want) {
		t.Errorf("requests %q; want %q (every page followed)", s.Requests(), want)
	}
	// Which pools let port 25 out: the static one and the IPv6 ones.
	leaking := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[0], "/") && f[2] == "OPEN" {
			leaking[f[0]] = true
		}
	}
	if want := map[string]bool{"203.0.113.0/24": true, "2001:db8:4a00::/48": true, "2001:db8:4a01::/48": true}; !maps.Equal(leaking, want) {
		t.Errorf("prefixes with port 25 OPEN %v; want %v", leaking, want)
	}

	recs, err := csv.NewReader(strings.NewReader(query(t, s, "prefixes", "64500", "--family", "ipv4", "--window", "7d", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := "ipv4,198.51.100.0/24,2,336,2026-03-06,2026-03-12,BLOCKED_RESET,2,OPEN,2,OPEN,2"
	if len(recs) != 4 || recs[0][0] != "family" || strings.Join(recs[2], ",") != want {
		t.Errorf("prefixes --format csv = %q; want the header, 3 IPv4 prefixes, the second %q", recs, want)
	}
	var r pb.GetPrefixesResponse
	if err := protojson.Unmarshal([]byte(query(t, s, "prefixes", "AS64500", "--format", "json", "--family", "ipv6")), &r); err != nil ||
		len(r.Prefixes) != 2 || len(r.Prefixes[0].Days) != 30 || r.Window == nil {
		t.Errorf("prefixes --format json: %v; want the 2 IPv6 prefixes with 30 days each and the window", err)
	}
	code, _, errOut := runCmd(t, "prefixes", "AS65000", "--collector", s.URL)
	if code != exitFailed || !strings.Contains(errOut, "no measurements from AS65000") {
		t.Errorf("prefixes AS65000 = %d, %q; want 1 and the collector's not found", code, errOut)
	}
}

func TestVerdictCell(t *testing.T) {
	reset, open := pb.Verdict_VERDICT_BLOCKED_RESET, pb.Verdict_VERDICT_OPEN
	for _, tc := range []struct {
		pp   *pb.PrefixPort
		want string
	}{
		{nil, "-"},
		{&pb.PrefixPort{Port: 25, Results: 4}, "-"},
		{&pb.PrefixPort{Port: 25, Verdict: reset, AgentVerdicts: []*pb.VerdictAgents{{Verdict: reset, Agents: 3}}}, "BLOCKED_RESET"},
		{&pb.PrefixPort{Port: 25, Verdict: open, AgentVerdicts: []*pb.VerdictAgents{{Verdict: open, Agents: 1}, {Verdict: reset, Agents: 1}}}, "OPEN 1/2"},
	} {
		if got := verdictCell(tc.pp); got != tc.want {
			t.Errorf("verdictCell(%v) = %q; want %q", tc.pp, got, tc.want)
		}
	}
}

func TestChanges(t *testing.T) {
	s := datasetclienttest.Start(t)
	golden(t, "changes.golden", query(t, s, "changes", "--country", "JP"))
	if n := len(s.Requests()); n != 2 {
		t.Errorf("%d requests for 4 changes in pages of 3; want 2", n)
	}
	out := query(t, s, "changes", "--asn", "AS64511", "--format", "csv")
	if want := "changed_at,asn,country,family,from_class,to_class\n2026-03-04T00:00:00Z,64511,DE,ipv4,OPEN,MIXED\n"; out != want {
		t.Errorf("changes --format csv = %q; want %q", out, want)
	}
}

func TestCountries(t *testing.T) {
	s := datasetclienttest.Start(t)
	golden(t, "countries.golden", query(t, s, "countries"))
}

func TestInfo(t *testing.T) {
	s := datasetclienttest.Start(t)
	out := query(t, s, "info")
	for _, want := range []string{"collector   " + s.URL, "schema      " + dataset.SchemaVersion, "licence     CC-BY-4.0", "refreshed   daily points 2026-03-12T09:26:00Z (", " ago), windows 2026-03-12T09:19:00Z (", "read from   a replica, 1.5s behind\n",
		"windows     7d, 30d (default), 90d", "max export  31 days", "reference MTAs, 2026-03-06 to 2026-03-12:",
		"  refmta-51a7c3e9d2b40f86 ipv4 25  120 results, blocked 50.0% [41.1, 58.9] (others 100.0% [96.8, 100.0]), 0 charged to it\n",
		"  refmta-c2d4e6f8a0b1c3d5 ipv4 25  120 results, blocked 100.0% [96.8, 100.0] (others 50.0% [41.1, 58.9]), 59 charged to it, FLAGGED"} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}
}

func TestEnvironment(t *testing.T) {
	s := datasetclienttest.Start(t)
	t.Setenv("OP25B_COLLECTOR", s.URL)
	t.Setenv("OP25B_FAMILY", "any") // op25b-agent's, not ours
	t.Setenv("OP25B_FORMAT", "json")
	t.Setenv("OP25B_TIMEOUT", "1ns")
	code, out, errOut := runCmd(t, "asns")
	if code != exitOK || !strings.HasPrefix(out, "ASN ") {
		t.Errorf("asns with OP25B_COLLECTOR = %d, %q, %q; want the table from %s", code, out, errOut, s.URL)
	}
	t.Setenv("OP25B_COLLECTOR", "collector.example:8443") // op25b-agent's gRPC address
	code, _, errOut = runCmd(t, "info")
	if code != exitUsage || !strings.Contains(errOut, `OP25B_COLLECTOR: collector URL "collector.example:8443": want an http(s) URL`) {
		t.Errorf("info with OP25B_COLLECTOR=collector.example:8443 = %d, %q; want 2 and the variable named", code, errOut)
	}
	// The command line wins.
	code, _, errOut = runCmd(t, "info", "--collector", "http://127.0.0.1:1")
	if code != exitFailed || !strings.Contains(errOut, "connection refused (is the collector's HTTP API at http://127.0.0.1:1?") {
		t.Errorf("info --collector http://127.0.0.1:1 = %d, %q; want 1 and a hint", code, errOut)
	}
}

func TestExitStatus(t *testing.T) {
	s := datasetclienttest.Start(t)
	for _, tc := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{nil, exitUsage, "usage: op25b COMMAND"},
		{[]string{"frobnicate"}, exitUsage, `op25b: unknown command "frobnicate"`},
		{[]string{"asns", "--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"asns", "--class", "SPAMMY"}, exitUsage, `op25b asns: --class: class "SPAMMY": want one of OP25B, INTERCEPT`},
		{[]string{"asns", "--family", "ipx"}, exitUsage, `--family: family "ipx": want ipv4 or ipv6`},
		{[]string{"asns", "--window", "fortnight"}, exitUsage, `--window: window "fortnight"`},
		{[]string{"asns", "--country", "Japan"}, exitUsage, `--country "Japan": want a two-letter code`},
		{[]string{"asns", "--format", "xml"}, exitUsage, `--format "xml": want table, csv, json`},
		{[]string{"asns", "--sort", "name"}, exitUsage, `--sort "name"`},
		{[]string{"asns", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"asns", "--collector", "127.0.0.1:9090"}, exitUsage, "--collector: collector URL \"127.0.0.1:9090\": want an http(s) URL"},
		{[]string{"asn"}, exitUsage, "op25b asn: missing ASN"},
		{[]string{"asn", "Example"}, exitUsage, `ASN "Example": want a number such as 64500 or AS64500`},
		{[]string{"peers", "AS1", "AS2"}, exitUsage, `unexpected argument "AS2"`},
		{[]string{"export", "--end", "2026-03-08", "-o", "x"}, exitUsage, "--start is required"},
		{[]string{"export", "--start", "2026-03-08", "--end", "2026-03-01", "-o", "x"}, exitUsage, "must come after"},
		{[]string{"export", "--start", "March", "--end", "2026-03-01", "-o", "x"}, exitUsage, `--start: time "March"`},
		{[]string{"export", "--start", "2026-03-01", "--end", "2026-03-08"}, exitUsage, "-o FILE is required"},
		{[]string{"export", "--start", "2026-03-01", "--end", "2026-03-08", "--format", "xlsx", "-o", "x"}, exitUsage, `want csv, ndjson, parquet`},
		{[]string{"asn", "AS64999"}, exitFailed, "op25b asn: collector said 404 NOT_FOUND: not found: no measurements from AS64999\n"},
		{[]string{"export", "--start", "2026-01-01", "--end", "2026-03-01", "-o", "-"}, exitFailed,
			"op25b export: collector said 400 INVALID_ARGUMENT: invalid request: range: 59.0 days is longer than the 31 days one export may cover; split it\n"},
	} {
		args := tc.args
		if len(args) > 0 && lookup(args[0]) != nil && !slices.Contains(args, "--collector") {
			args = append(args, "--collector", s.URL)
		}
		code, out, errOut := runCmd(t, args...)
		if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
			t.Errorf("op25b %q = %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.wantErr)
		}
		if tc.code == exitFailed && (strings.Count(errOut, "\n") != 1 || out != "") {
			t.Errorf("op25b %q: stdout %q, stderr %q; want nothing on stdout, one line on stderr", tc.args, out, errOut)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := runCmd(t, "version"); code != exitOK || out != "op25b dev\n" {
		t.Errorf("op25b version = %d, %q; want 0, %q", code, out, "op25b dev\n")
	}
	code, out, _ := runCmd(t, "help")
	if code != exitOK || !strings.Contains(out, "  export     download public raw results") || !strings.Contains(out, "OP25B_COLLECTOR") {
		t.Errorf("op25b help = %d:\n%s", code, out)
	}
	for _, args := range [][]string{{"help", "export"}, {"export", "-h"}, {"export", "--help"}} {
		code, out, errOut := runCmd(t, args...)
		if code != exitOK || errOut != "" || !strings.HasPrefix(out, "usage: op25b export --start DAY") ||
			!strings.Contains(out, "-quiet") || !strings.Contains(out, "examples:\n  op25b export --start 2026-03-01") {
			t.Errorf("op25b %q = %d, stderr %q:\n%s", args, code, errOut, out)
		}
	}
	if code, _, errOut := runCmd(t, "help", "nope"); code != exitUsage || !strings.Contains(errOut, `unknown command "nope"`) {
		t.Errorf("op25b help nope = %d, %q; want 2", code, errOut)
	}
	// Every command's help runs, with examples.
	for _, c := range commands {
		if code, out, _ := runCmd(t, "help", c.name); code != exitOK || !strings.Contains(out, "examples:\n  op25b "+c.name) {
			t.Errorf("op25b help %s = %d:\n%s", c.name, code, out)
		}
	}
}

func TestTimelineWraps(t *testing.T) {
	window := &pb.TimeRange{Start: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		End: timestamppb.New(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))}
	var buf bytes.Buffer
	writeTimeline(&buf, "ipv6", window, datasetclienttest.Timeline(64500, pb.AddressFamily_ADDRESS_FAMILY_IPV6, window))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "  ipv6  2026-01-01  ------- ") || !strings.HasPrefix(lines[1], "        2026-03-12  ") ||
		len(lines[0]) != len("  ipv6  2026-01-01  ")+70+9 || len(lines[1]) != len("        2026-03-12  ")+20+2 {
		t.Errorf("timeline of 90 days:\n%s\nwant 70 days on the first line, 20 on the second", buf.String())
	}
}

// Coloured class names leave the columns where they were.
func TestColorKeepsAlignment(t *testing.T) {
	rows := datasetclienttest.Summaries(dataset.Rolling(30, datasetclienttest.Now))
	var plain, color bytes.Buffer
	writeSummaries(&plain, summaryColumns(), rows, false)
	writeSummaries(&color, summaryColumns(), rows, true)
	stripped := regexp.MustCompile("\x1b\\[[0-9]+m").ReplaceAllString(color.String(), "")
	if stripped != plain.String() || !strings.Contains(color.String(), "\x1b[32mOP25B\x1b[0m") {
		t.Errorf("coloured table, colours removed:\n%s\nwant:\n%s", stripped, plain.String())
	}
}
