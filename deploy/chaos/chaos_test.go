package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMissed(t *testing.T) {
	for _, c := range []struct {
		name string
		row  Row
		want []string
	}{
		{"all met", Row{Tally: Tally{Produced: 10, Stored: 8, Lost: 2}, Reported: 2, AgeAfter: 1.5}, nil},
		{"duplicates and acknowledged losses", Row{Tally: Tally{Duplicated: 1, Lost: 3, LostAcked: 3}, AgeAfter: 1},
			[]string{"duplicates", "acknowledged results lost"}},
		// Acknowledged losses are no agent's to report: 3 drops, 3 reported.
		{"acknowledged losses only", Row{Tally: Tally{Lost: 5, LostAcked: 2}, Reported: 3, AgeAfter: 1}, []string{"acknowledged results lost"}},
		{"unreported drops", Row{Tally: Tally{Lost: 5}, Reported: 4, AgeAfter: 1}, []string{"drops unreported"}},
		{"flood stopped ingest", Row{ClientFlood: true, AgeAfter: 0}, []string{"ingest stopped"}},
		{"a fault not caused by clients may pause ingest", Row{ClientFlood: false, AgeAfter: 0}, nil},
		{"stale", Row{AgeAfter: 2.1}, []string{"rollups stale"}},
		{"age unknown", Row{AgeAfter: -1}, []string{"rollups' age unknown"}},
	} {
		if got := c.row.Missed(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Missed() = %q; want %q", c.name, got, c.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	rep := &Report{Started: t0, Ended: t0.Add(20 * time.Minute), Command: "make chaos", Setup: "6 agents.",
		ReportedSource: "spool_loss",
		Rows: []Row{
			{Phase: PhaseBaseline, Fault: "none", Tally: Tally{Produced: 100, Stored: 100}, Ingest: "100 results stored", AgeAfter: 0.5, AgeWorst: 1},
			{Phase: PhaseIdleConns, Fault: "20000 idle | connections", ClientFlood: true, Ingest: "stopped: 0 results", AgeAfter: 3, AgeWorst: 9,
				Notes: []string{"the collector logged 44 errors"}},
		},
		Total: Row{Phase: "all phases", Tally: Tally{Produced: 100, Stored: 100}, ClientFlood: true, AgeAfter: 3, AgeWorst: 9},
		Notes: []string{"PostgreSQL was orphaned."}}
	md := rep.Markdown()
	if !strings.HasPrefix(md, "## Chaos\n") {
		t.Errorf("the section starts %q; want ## Chaos", md[:min(len(md), 20)])
	}
	// make bench keeps the section from its heading to the next "## ".
	if n := strings.Count(md, "\n## "); n != 0 {
		t.Errorf("the section holds %d more level-2 headings; make bench would cut it there", n)
	}
	for _, want := range []string{
		"`make chaos`",
		"| **goal (issue 10)** | | | 0 | 0 acknowledged | every loss | goes on under every client-side flood | at most 2 | |",
		"| **baseline**: none | 100 | 100 | 0 | 0 (0) | 0 | 100 results stored | 0.5 (1.0) | none |",
		`20000 idle \| connections`,
		"| ingest stopped, rollups stale |",
		"- idle-connections: the collector logged 44 errors.",
		"- PostgreSQL was orphaned.",
		"(spool_loss)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
	if rows := strings.Count(rep.Table(), "\n"); rows != 2+1+len(rep.Rows)+1 {
		t.Errorf("the table has %d lines; want header, rule, goal, a row per phase and the totals", rows)
	}
}

func TestCheckPhases(t *testing.T) {
	if err := CheckPhases(append([]string{PhaseDrain}, AllPhases...)); err != nil {
		t.Errorf("CheckPhases(all) = %v", err)
	}
	if err := CheckPhases([]string{"quiet", "lunch"}); err == nil || !strings.Contains(err.Error(), `"lunch"`) {
		t.Errorf("CheckPhases(lunch) = %v; want an error naming it", err)
	}
}
