package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestRebuildCommand(t *testing.T) {
	url := storetest.URL(t)
	st, err := store.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
	url := storetest.URL(t)
	st, err := store.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
