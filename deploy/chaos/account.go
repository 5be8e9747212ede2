package chaos

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/op25b/observatory/internal/uuidv7"
)

// Round is one probing round of one agent, as its log tells it.
type Round struct {
	Agent string // principal id
	ID    string // round id, a UUIDv7 made when the round began
	At    time.Time
	// Results is how many results the round produced (its "round done"
	// line), or -1 when the agent died before it logged the line.
	Results int
	// SpoolFailed says that appending the round to the spool failed,
	// wholly or partly (full, ENOSPC, another write error): what is
	// missing of it was dropped by the agent, never acknowledged.
	SpoolFailed bool
}

// AgentLog is what one agent's log (all its processes, in order) says.
type AgentLog struct {
	ID     string  // principal id, from "agent running"
	Rounds []Round // in log order
	// Rejected are the result ids the collector refused for good.
	Rejected []string
}

// ReadAgentLog extracts the rounds of an agent from its log lines. A
// round's spool failure is the error about the spool that round() logs
// just before its "round done" line.
func ReadAgentLog(lines []Line) AgentLog {
	var a AgentLog
	failed := false
	for _, l := range lines {
		switch {
		case l.Msg == "agent running":
			a.ID = l.Attrs["id"]
			failed = false
		case l.Msg == "round done":
			id := l.Attrs["round"]
			_, at, err := uuidv7.Parse(id)
			if err != nil {
				continue
			}
			n, err := strconv.Atoi(l.Attrs["results"])
			if err != nil {
				continue
			}
			// An agent that says how many it spooled tells a partial
			// failure itself.
			if s, ok := l.Attrs["spooled"]; ok {
				if k, err := strconv.Atoi(s); err == nil && k < n {
					failed = true
				}
			}
			a.Rounds = append(a.Rounds, Round{Agent: a.ID, ID: id, At: at, Results: n, SpoolFailed: failed})
			failed = false
		case l.Msg == "the collector rejected a result":
			a.Rejected = append(a.Rejected, l.Attrs["id"])
		case l.Level == "ERROR" && spoolFailure(l.Msg):
			failed = true
		}
	}
	return a
}

// spoolFailure reports whether msg is the agent's complaint that a
// round's results could not all be spooled.
func spoolFailure(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "spool") && !strings.Contains(m, "undecodable") &&
		(strings.Contains(m, "full") || strings.Contains(m, "fail") || strings.Contains(m, "drop") || strings.Contains(m, "space"))
}

// RoundKey names a round of an agent.
type RoundKey struct{ Agent, Round string }

// Stored is what the database holds of one round.
type Stored struct {
	Rows     int       // result rows
	Distinct int       // distinct result ids among them
	At       time.Time // the round's start, from its id
}

// Window is a phase of the run: its rounds are those that began in
// [Start, End).
type Window struct {
	Name       string
	Start, End time.Time
}

// Tally counts the results of the rounds that began in one window, after
// the final drain.
type Tally struct {
	Rounds   int
	Produced int // results the rounds produced
	Stored   int // distinct result ids stored
	// Duplicated counts rows stored beyond the first of their result id.
	Duplicated int
	// Lost counts results produced, not stored and not in any spool.
	Lost int
	// LostAcked is the part of Lost whose round was durably spooled:
	// the agent deleted them only on an acknowledgement (or a rejection,
	// counted in Rejected), so the collector acknowledged them without
	// storing them.
	LostAcked int
	// Undelivered counts results still spooled after the drain.
	Undelivered int
	// Cut counts rounds whose agent died before logging them (a SIGKILL
	// during the round or its append): what was spooled of them is
	// counted as produced, what died in memory is not known.
	Cut int
	// SpoolFailed counts rounds whose append failed.
	SpoolFailed int
	// Rejected counts results the collector refused for good.
	Rejected int
}

// Add adds u to t.
func (t *Tally) Add(u Tally) {
	t.Rounds += u.Rounds
	t.Produced += u.Produced
	t.Stored += u.Stored
	t.Duplicated += u.Duplicated
	t.Lost += u.Lost
	t.LostAcked += u.LostAcked
	t.Undelivered += u.Undelivered
	t.Cut += u.Cut
	t.SpoolFailed += u.SpoolFailed
	t.Rejected += u.Rejected
}

// Account tallies each window: the rounds the agents logged, joined with
// what the database stored of every round and what the spools still hold.
// Rounds the logs do not know (their agent died before logging them) are
// taken from the database and the spools. A round outside every window
// goes to the nearest one before it, or the first.
func Account(logs []AgentLog, stored map[RoundKey]Stored, pending map[RoundKey]int, windows []Window) []Tally {
	out := make([]Tally, len(windows))
	if len(windows) == 0 {
		return out
	}
	type round struct {
		at          time.Time
		results     int
		spoolFailed bool
	}
	rounds := map[RoundKey]round{}
	for _, a := range logs {
		for _, r := range a.Rounds {
			rounds[RoundKey{r.Agent, r.ID}] = round{r.At, r.Results, r.SpoolFailed}
		}
	}
	at := func(id string) time.Time {
		_, t, _ := uuidv7.Parse(id)
		return t
	}
	for k, s := range stored {
		if _, ok := rounds[k]; !ok {
			t := s.At
			if t.IsZero() {
				t = at(k.Round)
			}
			rounds[k] = round{at: t, results: -1}
		}
	}
	for k := range pending {
		if _, ok := rounds[k]; !ok {
			rounds[k] = round{at: at(k.Round), results: -1}
		}
	}
	for k, r := range rounds {
		t := &out[windowOf(windows, r.at)]
		s, p := stored[k], pending[k]
		t.Rounds++
		t.Stored += s.Distinct
		t.Duplicated += s.Rows - s.Distinct
		t.Undelivered += p
		produced := r.results
		if produced < 0 {
			produced = s.Distinct + p
			t.Cut++
		}
		t.Produced += produced
		missing := max(produced-s.Distinct-p, 0)
		t.Lost += missing
		if r.spoolFailed {
			t.SpoolFailed++
		} else if r.results >= 0 {
			t.LostAcked += missing
		}
	}
	for _, a := range logs {
		for _, id := range a.Rejected {
			out[windowOf(windows, at(id))].Rejected++
		}
	}
	// A rejected result left the spool on the collector's word, like an
	// acknowledged one, but was refused, not lost unseen.
	for i := range out {
		out[i].LostAcked = max(out[i].LostAcked-out[i].Rejected, 0)
	}
	return out
}

// windowOf returns the index of the window holding t: the last one that
// starts at or before t, or the first.
func windowOf(ws []Window, t time.Time) int {
	i := sort.Search(len(ws), func(i int) bool { return ws[i].Start.After(t) })
	return max(i-1, 0)
}

// ReportedByPhase matches the losses the agents reported with the losses
// counted per phase. lost[i] is what each agent (by id) lost, not
// acknowledged, from the rounds begun in phase i; seen[i] is the
// collector's per-agent figure read at the end of phase i, and final at
// the end of the run. An agent's figure is a running total that only
// grows, so it covers its losses in order: its first n losses are
// reported once it reads n. An agent reports when it next reaches the
// collector, which may be after the phase (its collector was down).
//
// It returns, per phase, how many of the phase's losses the final figures
// cover, and the first phase at whose end the figures covered all of
// them: i itself when they arrived during the phase, a later phase, or
// len(seen) when only the final reading did, or -1 when it does not.
func ReportedByPhase(lost []map[string]int, seen []map[string]int64, final map[string]int64) (reported []int64, by []int) {
	reported, by = make([]int64, len(lost)), make([]int, len(lost))
	upTo := map[string]int64{} // each agent's losses up to and including phase i
	for i, phase := range lost {
		covered := func(figures map[string]int64) bool {
			for agent, n := range phase {
				if n > 0 && figures[agent] < upTo[agent]+int64(n) {
					return false
				}
			}
			return true
		}
		by[i] = -1
		for k := i; k < len(seen) && by[i] < 0; k++ {
			if covered(seen[k]) {
				by[i] = k
			}
		}
		if by[i] < 0 && covered(final) {
			by[i] = len(seen)
		}
		for agent, n := range phase {
			before := upTo[agent]
			upTo[agent] += int64(n)
			reported[i] += max(min(upTo[agent], final[agent])-before, 0)
		}
	}
	return reported, by
}
