package testbed

import (
	"context"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// TestScenariosCoverEveryVerdict checks the declared expectations: a
// verdict no scenario expects is a verdict the testbed never proves.
func TestScenariosCoverEveryVerdict(t *testing.T) {
	expected := make(map[verdict.Verdict][]string)
	for _, s := range Scenarios {
		for _, p := range probes() {
			v := s.Expect.Want(p)
			if !slices.Contains(expected[v], s.Name) {
				expected[v] = append(expected[v], s.Name)
			}
		}
	}
	for _, v := range verdict.All {
		if len(expected[v]) == 0 {
			t.Errorf("no scenario expects %s", v)
		}
	}
}

func TestScenarioTable(t *testing.T) {
	if len(Scenarios) > maxSites {
		t.Errorf("%d scenarios; the address plan holds %d", len(Scenarios), maxSites)
	}
	if n := len(site{index: maxSites}.transitIf()); n > 15 {
		t.Errorf("transit interface name is %d bytes; Linux allows 15", n)
	}
	seen := make(map[string]bool)
	for _, s := range Scenarios {
		if seen[s.Name] {
			t.Errorf("scenario %q declared twice", s.Name)
		}
		seen[s.Name] = true
		if len(s.Expect) != len(Ports) {
			t.Errorf("%s: expectations for %d ports; want exactly %v", s.Name, len(s.Expect), Ports)
		}
		for _, p := range probes() {
			if v := s.Expect.Want(p); v == verdict.Unspecified || int(v) > len(verdict.All) {
				t.Errorf("%s: %d/%s expects %v; want a verdict", s.Name, p.Port, p.Family, v)
			}
		}
		for _, mb := range s.Middleboxes {
			named := mb.Mode == ModeRelay || mb.Mode == ModeMITM
			if !slices.Contains([]string{ModeRelay, ModeStrip, ModeMITM}, mb.Mode) || mb.Port == 0 || named != (mb.Hostname != "") {
				t.Errorf("%s: middlebox %+v: want a known mode, a port, and a host name for relay and mitm only", s.Name, mb)
			}
		}
	}
}

func TestRuleset(t *testing.T) {
	s, err := Select([]string{"strip-starttls"})
	if err != nil {
		t.Fatal(err)
	}
	got := s[0].Ruleset()
	for _, want := range []string{
		"table inet isp {",
		"type filter hook forward priority filter; policy accept;",
		"type nat hook prerouting priority dstnat; policy accept;",
		`iifname "cust" tcp dport 25 counter redirect to :10025`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Ruleset() = %s\nwant it to contain %q", got, want)
		}
	}
	if _, err := Select([]string{"open", "no-such"}); err == nil || !strings.Contains(err.Error(), "no-such") {
		t.Errorf(`Select("no-such") error = %v; want it named`, err)
	}
}

func TestCompare(t *testing.T) {
	sc, err := Select([]string{"v4-only-block"})
	if err != nil {
		t.Fatal(err)
	}
	result := func(port uint32, fam op25bv1.AddressFamily, v op25bv1.Verdict) *op25bv1.ProbeResult {
		return &op25bv1.ProbeResult{Port: port, Family: fam, Verdict: v, Detail: "d",
			Timings: &op25bv1.Timings{Total: durationpb.New(1500 * time.Millisecond)}}
	}
	const v4, v6 = op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6
	rep := &op25bv1.ProbeReport{Results: []*op25bv1.ProbeResult{
		result(25, v4, op25bv1.Verdict_VERDICT_BLOCKED_RESET),              // as expected
		result(25, v6, op25bv1.Verdict_VERDICT_BLOCKED_RESET),              // wrong
		result(587, v4, op25bv1.Verdict_VERDICT_OPEN),                      // 587/IPv6 missing
		result(465, v4, op25bv1.Verdict_VERDICT_OPEN),                      // duplicated
		result(465, v4, op25bv1.Verdict_VERDICT_OPEN),                      //
		result(465, v6, op25bv1.Verdict_VERDICT_OPEN),                      // as expected
		result(443, v4, op25bv1.Verdict_VERDICT_OPEN),                      // not a row
		result(25, op25bv1.AddressFamily(9), op25bv1.Verdict_VERDICT_OPEN), // not a row
	}}
	rows := Compare(sc[0], rep, "")
	type short struct {
		port     uint16
		fam, got string
		pass     bool
	}
	var got []short
	for _, r := range rows {
		got = append(got, short{r.Port, r.Family, r.Got, r.Pass})
	}
	want := []short{
		{25, "IPv4", "BLOCKED_RESET", true},
		{25, "IPv6", "BLOCKED_RESET", false},
		{587, "IPv4", "OPEN", true},
		{587, "IPv6", noResult, false},
		{465, "IPv4", noResult, false},
		{465, "IPv6", "OPEN", true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Compare rows = %+v; want %+v", got, want)
	}
	if rows[0].ProbeMS != 1500 {
		t.Errorf("ProbeMS = %d; want 1500", rows[0].ProbeMS)
	}

	for _, r := range Compare(sc[0], nil, "agent crashed") {
		if r.Pass || r.Got != noResult || r.Detail != "agent crashed" {
			t.Errorf("Compare(nil report) row %+v; want a failure with the reason", r)
		}
	}
}

func probes() []Probe {
	var ps []Probe
	for _, port := range Ports {
		for _, f := range Families {
			ps = append(ps, Probe{Port: port, Family: f})
		}
	}
	return ps
}

// TestTestbed builds the real binaries and runs every scenario end to end.
func TestTestbed(t *testing.T) {
	testenv.NeedRoot(t)
	for tool, pkg := range map[string]string{"nft": "nftables", "ip": "iproute2"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" not found: install "+pkg+" (make testdeps does)")
		}
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin,
		"github.com/op25b/observatory/refmta/cmd/op25b-refmta",
		"github.com/op25b/observatory/agent/cmd/op25b-agent",
		"github.com/op25b/observatory/deploy/testbed/cmd/op25b-testbed")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, Config{
		BinDir:  bin,
		Timeout: 3 * time.Second,
		Log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	var table strings.Builder
	_ = rep.WriteTable(&table)
	t.Logf("testbed took %s (set-up %dms)\n%s", time.Since(start).Round(time.Millisecond), rep.SetupMS, table.String())
	if err != nil {
		t.Fatalf("Run: %v\nreference MTA log:\n%s", err, rep.RefMTALog)
	}
	for _, s := range rep.Scenarios {
		if s.AgentError != "" {
			t.Errorf("%s: agent run failed: %s\nstderr:\n%s", s.Name, s.AgentError, s.AgentStderr)
		}
		for _, r := range s.Rows {
			if !r.Pass {
				t.Errorf("%s %d/%s = %s (%s: %s); want %s", s.Name, r.Port, r.Family, r.Got, r.Failure, r.Detail, r.Expected)
			}
		}
	}
	got := rep.Verdicts()
	for _, v := range verdict.All {
		if !got[v.String()] {
			t.Errorf("no scenario produced %s", v)
		}
	}
	if !rep.Passed && !t.Failed() {
		t.Errorf("report not passed: %s", rep.Error)
	}
}
