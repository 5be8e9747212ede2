package chaos

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/uuidv7"
)

// agentLog writes what an agent logs (the messages of agent/daemon) and
// parses it back.
func agentLog(t *testing.T, write func(log *slog.Logger)) AgentLog {
	t.Helper()
	var buf bytes.Buffer
	write(slog.New(slog.NewTextHandler(&buf, nil)))
	lines, err := ParseLog(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return ReadAgentLog(lines)
}

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func roundID(sec int) string { return uuidv7.New(t0.Add(time.Duration(sec) * time.Second)) }

func TestReadAgentLog(t *testing.T) {
	r1, r2, r3 := roundID(1), roundID(6), roundID(11)
	a := agentLog(t, func(log *slog.Logger) {
		log.Info("agent running", "id", "agent-x", "spooled", 0)
		log.Warn("delivery interrupted; results stay spooled", "err", errors.New("unavailable"), "pending", 12)
		log.Info("round done", "round", r1, "results", 12, "pending", 12)
		log.Error("the spool is full: some of the round's results were dropped", "dropped_total", 5)
		log.Info("round done", "round", r2, "results", 12, "pending", 19)
		log.Error("spooling the round's results failed", "results", 12, "err", errors.New("no space left on device"))
		log.Info("agent running", "id", "agent-x", "spooled", 19) // a restart forgets a failure not followed by its round
		log.Info("round done", "round", r3, "results", 12, "pending", 31)
		log.Warn("the collector rejected a result", "id", "0193a0c4-7b1e-7000-8000-000000000009", "reason", "bad")
		log.Error("dropping an undecodable spooled result", "id", "x")
	})
	if a.ID != "agent-x" {
		t.Errorf("ID = %q; want agent-x", a.ID)
	}
	want := []Round{
		{Agent: "agent-x", ID: r1, At: t0.Add(time.Second), Results: 12},
		{Agent: "agent-x", ID: r2, At: t0.Add(6 * time.Second), Results: 12, SpoolFailed: true},
		{Agent: "agent-x", ID: r3, At: t0.Add(11 * time.Second), Results: 12},
	}
	if len(a.Rounds) != len(want) {
		t.Fatalf("rounds = %+v; want %+v", a.Rounds, want)
	}
	for i := range want {
		if a.Rounds[i] != want[i] {
			t.Errorf("round %d = %+v; want %+v", i, a.Rounds[i], want[i])
		}
	}
	if len(a.Rejected) != 1 || a.Rejected[0] != "0193a0c4-7b1e-7000-8000-000000000009" {
		t.Errorf("Rejected = %q", a.Rejected)
	}
}

// An agent that logs how many of a round it spooled tells a partial
// failure without an error line.
func TestReadAgentLogSpooledAttr(t *testing.T) {
	a := agentLog(t, func(log *slog.Logger) {
		log.Info("agent running", "id", "agent-y")
		log.Info("round done", "round", roundID(1), "results", 12, "spooled", 7, "pending", 7)
		log.Info("round done", "round", roundID(6), "results", 12, "spooled", 12, "pending", 12)
	})
	if len(a.Rounds) != 2 || !a.Rounds[0].SpoolFailed || a.Rounds[1].SpoolFailed {
		t.Errorf("rounds = %+v; want the first failed, the second not", a.Rounds)
	}
}

func TestAccount(t *testing.T) {
	w := []Window{{Name: "one", Start: t0}, {Name: "two", Start: t0.Add(10 * time.Second)}}
	ok, dropped, ackedLost, dup, cut, stuck, late := roundID(1), roundID(2), roundID(3), roundID(4), roundID(5), roundID(12), roundID(13)
	logs := []AgentLog{{ID: "a", Rounds: []Round{
		{Agent: "a", ID: ok, At: t0.Add(time.Second), Results: 12},
		{Agent: "a", ID: dropped, At: t0.Add(2 * time.Second), Results: 12, SpoolFailed: true},
		{Agent: "a", ID: ackedLost, At: t0.Add(3 * time.Second), Results: 12},
		{Agent: "a", ID: dup, At: t0.Add(4 * time.Second), Results: 12},
		{Agent: "a", ID: stuck, At: t0.Add(12 * time.Second), Results: 12},
	}, Rejected: []string{uuidv7.New(t0.Add(3 * time.Second))}}}
	stored := map[RoundKey]Stored{
		{"a", ok}:        {Rows: 12, Distinct: 12},
		{"a", dropped}:   {Rows: 5, Distinct: 5},
		{"a", ackedLost}: {Rows: 9, Distinct: 9},
		{"a", dup}:       {Rows: 13, Distinct: 12},
		{"a", cut}:       {Rows: 4, Distinct: 4}, // the agent died before logging it
		{"a", stuck}:     {Rows: 2, Distinct: 2},
		{"a", late}:      {Rows: 12, Distinct: 12, At: t0.Add(13 * time.Second)}, // unlogged too
	}
	pending := map[RoundKey]int{{"a", stuck}: 10, {"a", cut}: 2}
	got := Account(logs, stored, pending, w)
	want := []Tally{
		{Rounds: 5, Produced: 12 + 12 + 12 + 12 + 6, Stored: 12 + 5 + 9 + 12 + 4, Duplicated: 1, Lost: 7 + 3, LostAcked: 3 - 1,
			Undelivered: 2, Cut: 1, SpoolFailed: 1, Rejected: 1},
		{Rounds: 2, Produced: 12 + 12, Stored: 2 + 12, Undelivered: 10, Cut: 1},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("window %s: %+v\n want %+v", w[i].Name, got[i], want[i])
		}
	}
	var total Tally
	for _, g := range got {
		total.Add(g)
	}
	if total.Produced != total.Stored+total.Lost+total.Undelivered {
		t.Errorf("total %+v: produced is not stored + lost + undelivered", total)
	}
}

// A round before the first window counts in the first.
func TestWindowOf(t *testing.T) {
	w := []Window{{Start: t0}, {Start: t0.Add(time.Minute)}}
	for _, c := range []struct {
		at   time.Time
		want int
	}{{t0.Add(-time.Hour), 0}, {t0, 0}, {t0.Add(59 * time.Second), 0}, {t0.Add(time.Minute), 1}, {t0.Add(time.Hour), 1}} {
		if got := windowOf(w, c.at); got != c.want {
			t.Errorf("windowOf(%v) = %d; want %d", c.at.Sub(t0), got, c.want)
		}
	}
}

func TestReportedByPhase(t *testing.T) {
	lost := []map[string]int{
		{},               // nothing lost
		{"a": 3, "b": 2}, // reported during the phase
		{"a": 4},         // reported only after the next phase (the collector was down)
		{"b": 5},         // 4 of 5 ever reported
		{"a": 1},         // reported only by the final reading
	}
	seen := []map[string]int64{
		{},
		{"a": 3, "b": 2},
		{"a": 3, "b": 2},
		{"a": 7, "b": 6},
		{"a": 7, "b": 6},
	}
	final := map[string]int64{"a": 8, "b": 6}
	reported, by := ReportedByPhase(lost, seen, final)
	if want := []int64{0, 5, 4, 4, 1}; !slices.Equal(reported, want) {
		t.Errorf("reported = %v; want %v", reported, want)
	}
	if want := []int{0, 1, 3, -1, 5}; !slices.Equal(by, want) {
		t.Errorf("by = %v; want %v", by, want)
	}
}
