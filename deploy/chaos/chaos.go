// Package chaos is the chaos run (`make chaos`, docs/chaos.md): the real
// collector with its embedded PostgreSQL, two reference MTAs and several
// agent daemons, each agent in a network namespace of its own, and faults
// injected one phase at a time in bounded loops: the collector, an agent
// during its spool appends and PostgreSQL killed with SIGKILL, PostgreSQL
// stopped for minutes, an agent's spool and the collector's disk full,
// 20,000 idle HTTP connections and a request flood from one address, a
// quiet hour and a UTC midnight under an injected clock.
//
// It measures, per phase: the results the agents produced (their logs,
// round by round), what PostgreSQL stored of them, duplicates, what was
// lost after a final drain and how much of that the collector had
// acknowledged, what the collector recorded as lost by the agents,
// whether ingest went on during the faults the clients cause, and how
// old the published rollups are after the phase. It is a soak that
// reports figures against the goals of issue 10, not a test that passes
// or fails on time.
package chaos

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Config configures a run. Zero fields take the defaults of Defaults.
type Config struct {
	// BinDir holds op25b-collector, op25b-refmta and op25b-agent.
	BinDir string
	// Self is the op25b-chaos binary, which runs the floods inside
	// their namespace.
	Self string
	// WorkDir receives the logs and state; empty: a new directory under
	// /var/tmp.
	WorkDir string
	// Phases to run, in the order of AllPhases whatever the order given;
	// empty: all. The final drain always runs.
	Phases []string

	Agents       int           // agents on ordinary disks; two more run beside them (a spool on a tmpfs, a 1 MiB spool)
	Interval     time.Duration // the agents' round interval (collector --interval)
	RefreshEvery time.Duration // collector --refresh-every
	Baseline     time.Duration // the fault-free phase
	Settle       time.Duration // normal running after each fault, inside its phase
	Recover      time.Duration // how long ingest gets to resume by itself before the harness restarts the collector
	Fault        time.Duration // length of the ENOSPC, disk-full and flood faults
	PGDown       time.Duration // PostgreSQL stopped
	Quiet        time.Duration // no agent running
	Drain        time.Duration // normal running at the end, before the agents stop
	Kills        int           // SIGKILLs of the collector
	AgentKills   int           // SIGKILLs of an agent during a spool append
	PGKills      int           // SIGKILLs of the postmaster
	IdleConns    int           // idle HTTP connections from one address
	// CollectorNofile is the collector's RLIMIT_NOFILE.
	CollectorNofile uint64
	// CollectorDisk is the size of the tmpfs holding the collector's data
	// directory (its PostgreSQL); AgentSpoolDisk that of the tmpfs agent's
	// spool.
	CollectorDisk, AgentSpoolDisk int64

	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

// Defaults is the configuration of `make chaos`: about 20 minutes.
var Defaults = Config{
	Agents:          4,
	Interval:        5 * time.Second,
	RefreshEvery:    2 * time.Second,
	Baseline:        60 * time.Second,
	Settle:          30 * time.Second,
	Recover:         30 * time.Second,
	Fault:           60 * time.Second,
	PGDown:          2 * time.Minute,
	Quiet:           2 * time.Minute,
	Drain:           60 * time.Second,
	Kills:           6,
	AgentKills:      10,
	PGKills:         2,
	IdleConns:       20000,
	CollectorNofile: 20000,
	CollectorDisk:   1 << 30,
	AgentSpoolDisk:  64 << 20,
}

func (c Config) withDefaults() Config {
	d := Defaults
	for _, f := range []struct{ v, def *time.Duration }{{&c.Interval, &d.Interval}, {&c.RefreshEvery, &d.RefreshEvery},
		{&c.Baseline, &d.Baseline}, {&c.Settle, &d.Settle}, {&c.Recover, &d.Recover}, {&c.Fault, &d.Fault},
		{&c.PGDown, &d.PGDown}, {&c.Quiet, &d.Quiet}, {&c.Drain, &d.Drain}} {
		orDefault(f.v, *f.def)
	}
	for _, f := range []struct{ v, def *int }{{&c.Agents, &d.Agents}, {&c.Kills, &d.Kills}, {&c.AgentKills, &d.AgentKills},
		{&c.PGKills, &d.PGKills}, {&c.IdleConns, &d.IdleConns}} {
		orDefault(f.v, *f.def)
	}
	orDefault(&c.CollectorNofile, d.CollectorNofile)
	orDefault(&c.CollectorDisk, d.CollectorDisk)
	orDefault(&c.AgentSpoolDisk, d.AgentSpoolDisk)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Phase names, in the order a run takes them.
const (
	PhaseBaseline       = "baseline"
	PhaseCollectorKill  = "collector-kill"
	PhaseAgentKill      = "agent-kill"
	PhasePostgresKill   = "postgres-kill"
	PhasePostgresStop   = "postgres-stop"
	PhaseSpoolENOSPC    = "spool-enospc"
	PhaseDiskFull       = "disk-full"
	PhaseIdleConns      = "idle-connections"
	PhaseRequestFlood   = "request-flood"
	PhaseQuiet          = "quiet"
	PhaseMidnight       = "midnight"
	PhaseDrain          = "drain"
	clockOffsetVariable = "OP25B_TEST_ONLY_CLOCK_OFFSET"
)

// AllPhases lists the phases a run can take, in order; the drain ends
// every run.
var AllPhases = []string{PhaseBaseline, PhaseCollectorKill, PhaseAgentKill, PhasePostgresKill, PhasePostgresStop,
	PhaseSpoolENOSPC, PhaseDiskFull, PhaseIdleConns, PhaseRequestFlood, PhaseQuiet, PhaseMidnight}

// CheckPhases reports an unknown phase name.
func CheckPhases(names []string) error {
	for _, n := range names {
		found := n == PhaseDrain
		for _, p := range AllPhases {
			found = found || p == n
		}
		if !found {
			return fmt.Errorf("chaos: unknown phase %q (want one of %s)", n, strings.Join(AllPhases, ", "))
		}
	}
	return nil
}

// Row is the outcome of one phase.
type Row struct {
	Phase string
	Fault string // what was done, with its figures
	Tally
	// Reported is how many of the phase's losses (not acknowledged) the
	// collector had on record at the end of the run (ReportedByPhase).
	Reported int64
	// ClientFlood marks a fault that clients cause: ingest must go on.
	ClientFlood bool
	// IngestWentOn says whether results were stored while the fault
	// lasted (judged only for client floods); Ingest says how.
	IngestWentOn bool
	Ingest       string
	// AgeAfter is the age of the published rollups at the end of the
	// phase, and AgeWorst the largest age seen while the phase ran with
	// the database readable, in refresh periods; negative: not known.
	AgeAfter, AgeWorst float64
	Notes              []string
}

// Missed lists the goals of issue 10 that the row misses.
func (r Row) Missed() []string {
	var out []string
	if r.Duplicated > 0 {
		out = append(out, "duplicates")
	}
	if r.LostAcked > 0 {
		out = append(out, "acknowledged results lost")
	}
	if unacked := int64(r.Lost - r.LostAcked); r.Reported < unacked {
		out = append(out, "drops unreported")
	}
	if r.ClientFlood && !r.IngestWentOn {
		out = append(out, "ingest stopped")
	}
	switch {
	case r.AgeAfter > 2:
		out = append(out, "rollups stale")
	case r.AgeAfter < 0:
		out = append(out, "rollups' age unknown")
	}
	return out
}

// Report is the outcome of a run.
type Report struct {
	Started, Ended time.Time
	// WorkDir holds the run's logs.
	WorkDir string
	Command string
	Setup   string // the configuration in words
	Rows    []Row
	Total   Row
	// ReportedSource names what the collector's loss figures were read
	// from (columns of its schema).
	ReportedSource string
	Notes          []string
}

func age(p float64) string {
	switch {
	case p < 0:
		return "unknown"
	case p >= 100:
		return fmt.Sprintf("%.0f", p)
	}
	return fmt.Sprintf("%.1f", p)
}

// Table renders the report's table as Markdown: a goal row first, then a
// row per phase and the totals.
func (r *Report) Table() string {
	var b strings.Builder
	b.WriteString("| phase: fault | produced | stored | duplicated | lost (of them acknowledged) | reported lost | ingest | rollups' age after (worst), refresh periods | goals missed |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	b.WriteString("| **goal (issue 10)** | | | 0 | 0 acknowledged | every loss | goes on under every client-side flood | at most 2 | |\n")
	row := func(x Row, name string) {
		missed := strings.Join(x.Missed(), ", ")
		if missed == "" {
			missed = "none"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d (%d) | %d | %s | %s (%s) | %s |\n", name, x.Produced, x.Stored, x.Duplicated,
			x.Lost, x.LostAcked, x.Reported, cell(x.Ingest), age(x.AgeAfter), age(x.AgeWorst), missed)
	}
	for _, x := range r.Rows {
		row(x, "**"+x.Phase+"**: "+cell(x.Fault))
	}
	row(r.Total, "**all phases**")
	return b.String()
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// Markdown renders the "## Chaos" section of BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("## Chaos\n\n")
	fmt.Fprintf(&b, "Written by `%s` on %s (%s); docs/chaos.md says how each figure is made.\n", r.Command,
		r.Started.UTC().Format("2006-01-02"), r.Ended.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "%s\n\n", r.Setup)
	b.WriteString("Per phase: the results of the rounds the agents began in it (their logs), after a final drain:\n")
	b.WriteString("stored (distinct result ids in PostgreSQL), duplicated (rows beyond the first of an id), lost\n")
	b.WriteString("(neither stored nor still spooled) and, of those, acknowledged (durably spooled, then deleted by the\n")
	b.WriteString("agent on the collector's word); reported lost: how many of those losses the collector had on record from\n")
	fmt.Fprintf(&b, "the agents (%s) at the end (the notes say when); ingest: results stored while the fault lasted;\n", r.ReportedSource)
	b.WriteString("the rollups' age: now minus\n")
	b.WriteString("`agg_state.refreshed_at`, on the collector's clock, in refresh periods.\n\n")
	b.WriteString(r.Table())
	b.WriteString("\n")
	for _, x := range r.Rows {
		notes := x.Notes
		if x.Cut > 0 {
			notes = append(notes, fmt.Sprintf("%d rounds cut by a SIGKILL before their agent logged them (counted from what was stored)", x.Cut))
		}
		if x.SpoolFailed > 0 {
			notes = append(notes, fmt.Sprintf("%d rounds the agent could not spool whole", x.SpoolFailed))
		}
		if x.Undelivered > 0 {
			notes = append(notes, fmt.Sprintf("%d results still spooled after the drain", x.Undelivered))
		}
		if x.Rejected > 0 {
			notes = append(notes, fmt.Sprintf("%d results rejected by the collector", x.Rejected))
		}
		if len(notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- %s: %s.\n", x.Phase, strings.Join(notes, "; "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}
