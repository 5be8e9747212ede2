package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) {
	// Tests that need a collector process start this binary as one.
	if os.Getenv(runAsCollector) == "1" {
		main()
		os.Exit(0)
	}
	storetest.Main(m)
}

// openStore opens a migrated Store on a fresh database for the commands
// to find at url.
func openStore(t *testing.T) (url string, st *store.Store) {
	t.Helper()
	url = storetest.URL(t)
	st, err := store.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return url, st
}

func TestRebuildCommand(t *testing.T) {
	url, st := openStore(t)
	w := datasettest.NewWorld()
	w.Seed(t, st)
	var out bytes.Buffer
	if err := rebuild([]string{"--database-url", url, "--log-level", "error"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("rebuilt from %d results: ", len(w.Results())); !strings.HasPrefix(out.String(), want) {
		t.Errorf("rebuild printed %q; want it to start %q", out.String(), want)
	}
	var classes int
	st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM agg_class WHERE window_days = 0").Scan(&classes)
	if classes == 0 {
		t.Error("no timeline classes after rebuild")
	}
	if err := rebuild([]string{"--database-url", url, "--windows", "7,x"}, &out); err == nil || !strings.Contains(err.Error(), "--windows") {
		t.Errorf("bad --windows: %v; want an error naming the flag", err)
	}
}

func TestPrintSummary(t *testing.T) {
	var b bytes.Buffer
	err := printSummary(&b, []store.VerdictCount{
		{ASN: 64500, Name: "EXAMPLE", Country: "JP", Family: 4, Port: 25, Verdict: 1, Results: 2, Agents: 1},
		{ASN: 64500, Name: "EXAMPLE", Country: "JP", Family: 4, Port: 25, Verdict: 2, Results: 5, Agents: 3},
		{ASN: 0, Family: 6, Port: 465, Verdict: 7, Results: 1, Agents: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"AS64500 EXAMPLE (JP)  IPv4    25    7        3       OPEN 2, BLOCKED_TIMEOUT 5", "unknown               IPv6    465   1        1       INCONCLUSIVE 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

// TestSummaryFlagsRefMTA: the summary counts the results charged to
// reference MTAs and flags the one whose blocked share departs.
func TestSummaryFlagsRefMTA(t *testing.T) {
	url, st := openStore(t)
	w := &datasettest.World{}
	w.TwoRefMTAs(64510, 4, 1)
	w.Seed(t, st)
	var out bytes.Buffer
	// The seeded world lies in the past: windows long enough to reach it.
	if err := summary([]string{"--database-url", url, "--log-level", "error", "--since", "87600h", "--refmta-window", "366"}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if want := "OPEN 56, BLOCKED_TIMEOUT 56 (56 charged to reference MTAs)"; !strings.Contains(got, want) {
		t.Errorf("summary lacks %q:\n%s", want, got)
	}
	var line string
	for l := range strings.Lines(got) {
		if strings.HasPrefix(l, "refmta-faulty  ipv4    25 ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 18 || f[3] != "56" || f[7] != "100.0%" || f[10] != "0.0%" || f[16] != "56" || f[17] != "FLAGGED:" {
		t.Errorf("the faulty reference MTA's port 25 line = %q; want 56 results, 100%% blocked against 0%%, 56 charged, FLAGGED", line)
	}
	if n := strings.Count(got, "FLAGGED"); n != 1 {
		t.Errorf("summary flags %d lines; want 1:\n%s", n, got)
	}
}

func TestPrintLosses(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	if err := printLosses(&b, nil, now); err != nil {
		t.Fatal(err)
	}
	if want := "all time: 0 (spool full 0, disk full 0, write error 0, damaged 0); agents that reported losses: 0"; !strings.Contains(b.String(), want) {
		t.Errorf("no losses: %q; want %q", b.String(), want)
	}
	losses := []store.AgentLoss{
		{Agent: "agent-a", Label: "home router", Lost: store.SpoolLoss{Full: 40, NoSpace: 36}, Spools: 2, Increased: now.Add(-time.Hour)},
		{Agent: "agent-b", Lost: store.SpoolLoss{Corrupt: 1}, Spools: 1, Increased: now.Add(-48 * time.Hour)},
	}
	for i := range maxLossLines {
		losses = append(losses, store.AgentLoss{Agent: fmt.Sprintf("agent-%02d", i), Lost: store.SpoolLoss{WriteError: 1}, Spools: 1, Increased: now.Add(-72 * time.Hour)})
	}
	b.Reset()
	if err := printLosses(&b, losses, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"all time: 97 (spool full 40, disk full 36, write error 20, damaged 1); agents that reported losses: 22, that lost more in the window: 1\n",
		"agent-a   home router  76    40          36         0            0        2       2026-11-23 09:00:00\n",
		"agent-b                1     0           0          0            1        1       2026-11-21 10:00:00\n",
		"(and 2 more agents)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("losses lack %q:\n%s", want, got)
		}
	}
}

// TestSummaryLosses: what agents reported losing reaches the summary.
func TestSummaryLosses(t *testing.T) {
	url, st := openStore(t)
	if _, err := st.Pool.Exec(context.Background(), `INSERT INTO principals (principal_id, kind, public_key, credential_hash, label)
		VALUES ('agent-a', 1, '\x00', '\x01', 'router')`); err != nil {
		t.Fatal(err)
	}
	for _, l := range []store.SpoolLoss{{SpoolID: "0190e0a4-7c2e-7000-8000-000000000001", Full: 9, NoSpace: 36}, {SpoolID: "0190e0a4-7c2e-7000-8000-000000000001", Full: 2}} {
		if _, err := st.RecordSpoolLoss(context.Background(), "agent-a", l); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := summary([]string{"--database-url", url, "--log-level", "error"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "all time: 45 (spool full 9, disk full 36, write error 0, damaged 0); agents that reported losses: 1, that lost more in the window: 1"; !strings.Contains(out.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, out.String())
	}
}

func TestTestOnlyClock(t *testing.T) {
	t.Setenv(testOnlyClockVariable, "")
	if now, err := testOnlyClock(); now != nil || err != nil {
		t.Errorf("testOnlyClock() with %s unset = a clock, %v; want nil, nil", testOnlyClockVariable, err)
	}
	t.Setenv(testOnlyClockVariable, "-90m")
	now, err := testOnlyClock()
	if err != nil || now == nil {
		t.Fatalf("testOnlyClock() with -90m = %v; want a clock", err)
	}
	if d := time.Until(now()); d > -89*time.Minute || d < -91*time.Minute {
		t.Errorf("the clock shifted by -90m reads %v from now", d)
	}
	t.Setenv(testOnlyClockVariable, "tomorrow")
	if _, err := testOnlyClock(); err == nil || !strings.Contains(err.Error(), testOnlyClockVariable) {
		t.Errorf("testOnlyClock() with a bad value: %v; want an error naming the variable", err)
	}
}
