package testbed

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/deploy/testbed/impair"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestValidityScenarios(t *testing.T) {
	all, err := ValidityScenarios(nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	want := []string{"open", "drop25", "loss20", "rtt600-drop25", "rtt1500", "rtt1500-loss10-drop25", "cgnat", "refmta-busy", "two-refmtas"}
	if !slices.Equal(names, want) {
		t.Errorf("ValidityScenarios(nil) = %v; want %v", names, want)
	}
	some, err := ValidityScenarios([]string{"rtt600-drop25"})
	if err != nil || len(some) != 2 || some[0].Name != "drop25" || some[1].Name != "rtt600-drop25" {
		t.Errorf("ValidityScenarios(rtt600-drop25) = %v, %v; want drop25 (its baseline) and rtt600-drop25", some, err)
	}
}

func TestTally(t *testing.T) {
	scs, err := Select([]string{"rtt600-drop25", "refmta-busy"})
	if err != nil {
		t.Fatal(err)
	}
	drop, busy := newTally(scs[0]), newTally(scs[1])
	var claims []bool
	for range 3 {
		claims = append(claims, drop.claim(12, 6))
	}
	if !slices.Equal(claims, []bool{true, true, false}) {
		t.Errorf("claims of 6 probes towards 12 = %v; want two, then none", claims)
	}
	report := func(m RefMTA, vs map[Probe]verdict.Verdict, failure string) *op25bv1.ProbeReport {
		rep := &op25bv1.ProbeReport{}
		for p, v := range vs {
			r := result(m, uint32(p.Port), p.Family, v, failure)
			rep.Results = append(rep.Results, r)
		}
		return rep
	}
	first := map[Probe]verdict.Verdict{}
	for _, p := range scs[0].Expect.Probes() {
		first[p] = scs[0].Expect.Want(p)
	}
	second := map[Probe]verdict.Verdict{
		{MainMTA, 25, IPv4}:  verdict.Inconclusive,   // could not tell
		{MainMTA, 25, IPv6}:  verdict.Open,           // false OPEN
		{MainMTA, 587, IPv4}: verdict.BlockedTimeout, // false BLOCKED
		{MainMTA, 587, IPv6}: verdict.Tampered,       // false TAMPERED
		{MainMTA, 465, IPv4}: verdict.Intercepted,    // false INTERCEPTED
		// 465/IPv6 missing: not a probe
	}
	drop.add([]agentRun{{ms: 1000, report: report(MainMTA, first, "")}, {ms: 3000, report: report(MainMTA, second, "deadline")}, {ms: 9000, err: "killed"}}, 12)
	r := drop.result()
	if r.Rounds != 3 || r.AgentErrors != 1 || r.Probes != 11 || r.Expected != 6 || r.Inconclusive != 1 ||
		r.FalseBlocked != 1 || r.FalseIntercepted != 2 || r.FalseOther != 1 || len(r.FalseRows) != 4 || r.Failures["deadline"] != 1 {
		t.Errorf("tally = %+v", r)
	}
	if r.RoundP50MS != 3000 || r.RoundP99MS != 9000 || r.ControlRTTP50MS != 600 {
		t.Errorf("round p50 %d, p99 %d, control RTT %v; want 3000, 9000, 600", r.RoundP50MS, r.RoundP99MS, r.ControlRTTP50MS)
	}
	if got := r.InconclusiveShare(); got != 1.0/11 {
		t.Errorf("InconclusiveShare() = %v; want 1/11", got)
	}

	busy.add([]agentRun{{report: report(BusyMTA, map[Probe]verdict.Verdict{
		{BusyMTA, 25, IPv4}: verdict.Inconclusive,
	}, "refmta_busy")}, {report: report(BusyMTA, map[Probe]verdict.Verdict{
		{BusyMTA, 25, IPv4}: verdict.Inconclusive,
	}, "connection_lost")}}, 0)
	if b := busy.result(); b.Expected != 1 || b.Inconclusive != 1 || b.Failures["refmta_busy"] != 1 {
		t.Errorf("busy tally = %+v; want refmta_busy expected, connection_lost counted INCONCLUSIVE", b)
	}
}

func TestWriteMarkdown(t *testing.T) {
	rep := &ValidityReport{StartedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Probes: 1000, Hosts: 5, Pace: "2s",
		AgentVersion: "v1", DurationMS: 60_000,
		Scenarios: []ValidityScenario{
			{Name: "open", Probes: 1002, Rounds: 167, Verdicts: map[string]int{"OPEN": 1002}, Expected: 1002, RoundP50MS: 100, RoundP99MS: 300},
			{Name: "loss20", Baseline: "open", Probes: 1000, Rounds: 167, Verdicts: map[string]int{"OPEN": 940, "INCONCLUSIVE": 58, "TAMPERED": 2},
				Expected: 940, Inconclusive: 58, FalseIntercepted: 2, Failures: map[string]int{"connection_lost": 50, "unconfirmed": 8},
				RoundP50MS: 4000, RoundP99MS: 20000, ControlRTTP50MS: 0.3,
				Link: &LinkReport{Down: impair.Stats{Shape: "loss 20%", Received: 1000, Lost: 201}, Up: impair.Stats{Shape: "loss 20%", Received: 900, Lost: 180}}},
		}}
	var b strings.Builder
	if err := rep.WriteMarkdown(&b, ValidityConfig{Probes: 1000, Hosts: 5, Pace: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## Validity\n",
		"Command: `op25b-testbed validity --bin out --probes 1000 --hosts 5 --pace 2s`",
		"| `loss20` | 1000 (167) | OPEN 940, TAMPERED 2, INCONCLUSIVE 58 | 0 | 2 (2.00 per 1,000) | 0 | 58 (5.8%) | 4.0 s / 20.0 s | `open`: 0.1 s / 0.3 s | 40.00 |",
		"| zero false BLOCKED | `loss20` | 0 of 1000 | yes |",
		"| at most 1 false INTERCEPTED or TAMPERED per 1,000 probes | `loss20` | 2.00 per 1,000 | **no** |",
		"| INCONCLUSIVE under 5% at 20% loss | `loss20` | 5.8% | **no** |",
		"| `loss20` | loss 20% | 20.1% of 1000, 0 / 0 ms | 20.0% of 900, 0 / 0 ms | 0.3 ms |",
		"`loss20`: connection_lost 50, unconfirmed 8",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown:\n%s\nwant it to contain %q", md, want)
		}
	}
	if strings.Contains(md, "| zero false BLOCKED | `open`") {
		t.Errorf("markdown checks the goals on a baseline:\n%s", md)
	}
}
