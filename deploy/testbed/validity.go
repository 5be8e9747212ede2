package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/op25b/observatory/deploy/testbed/impair"
	"github.com/op25b/observatory/internal/verdict"
)

// ValidityConfig is one run of the validity benchmark: the scenarios that
// put the measurement under noise (those with a Baseline) run round after
// round until each has at least Probes probes, and every verdict is
// counted against the expectation.
type ValidityConfig struct {
	// BinDir holds RefMTABin, AgentBin and TestbedBin.
	BinDir string
	// Scenarios to measure by name (default: every scenario with a
	// Baseline); their baselines are measured too, as limits.
	Scenarios []string
	// Probes is the least number of probes (reference MTA × port × family)
	// per scenario.
	Probes int
	// Hosts is how many agent hosts of a scenario run rounds in parallel,
	// each with its own address (1 to 5); a scenario whose agents share one
	// address has one host.
	Hosts int
	// Pace is the least time between the starts of two rounds on one host:
	// one volunteer does not probe back to back, and the reference MTA's
	// per-source limits are not what the benchmark measures (except where
	// the scenario says so, as the CGNAT does).
	Pace time.Duration
	Log  *slog.Logger
}

// maxAgentErrors stops a scenario whose agents keep failing to report.
const maxAgentErrors = 20

// ValidityReport is the outcome of a validity run, as written by --report.
// Like Report, it is for people and CI, not a dataset.
type ValidityReport struct {
	RunID      string             `json:"run_id"`
	StartedAt  time.Time          `json:"started_at"`
	DurationMS int64              `json:"duration_ms"`
	Probes     int                `json:"probes"`
	Hosts      int                `json:"hosts"`
	Pace       string             `json:"pace"`
	Error      string             `json:"error,omitempty"`
	Scenarios  []ValidityScenario `json:"scenarios"`
	// AgentVersion is what the agent binary says it is.
	AgentVersion string `json:"agent_version"`
}

// ValidityScenario is what the rounds of one scenario found.
type ValidityScenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Baseline    string `json:"baseline,omitempty"`
	Noisy       bool   `json:"noisy,omitempty"`
	// Rounds counts agent processes; AgentErrors those that gave no report.
	Rounds      int `json:"rounds"`
	AgentErrors int `json:"agent_errors,omitempty"`
	// Probes counts the probes that got a verdict, Verdicts each verdict.
	Probes   int            `json:"probes"`
	Verdicts map[string]int `json:"verdicts"`
	// Expected counts the probes that got their expected verdict (and
	// failure class, where the scenario names one).
	Expected int `json:"expected"`
	// False verdicts: a conclusive verdict other than the expected one.
	FalseBlocked     int `json:"false_blocked"`
	FalseIntercepted int `json:"false_intercepted_or_tampered"`
	FalseOther       int `json:"false_other"`
	// Inconclusive counts INCONCLUSIVE where another verdict was expected,
	// or with another failure class than the expected one.
	Inconclusive int `json:"inconclusive"`
	// Failures counts the failure classes of INCONCLUSIVE probes.
	Failures map[string]int `json:"inconclusive_failures,omitempty"`
	// Round durations (one agent process, its whole check) and the
	// control port's TCP connect time, in milliseconds.
	RoundP50MS      int64   `json:"round_p50_ms"`
	RoundP99MS      int64   `json:"round_p99_ms"`
	RoundMaxMS      int64   `json:"round_max_ms"`
	ControlRTTP50MS float64 `json:"control_rtt_p50_ms"`
	// FalseRows are the first false verdicts, for the reader to look at.
	FalseRows []Row       `json:"false_rows,omitempty"`
	Link      *LinkReport `json:"link,omitempty"`
	Error     string      `json:"error,omitempty"`
}

// ValidityScenarios returns the scenarios a validity run measures: those
// named (default: every scenario with a Baseline) and their baselines, in
// table order.
func ValidityScenarios(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		for _, s := range Scenarios {
			if s.Baseline != "" {
				names = append(names, s.Name)
			}
		}
	}
	picked, err := Select(names)
	if err != nil {
		return nil, err
	}
	for _, s := range picked {
		if s.Baseline != "" && !slices.Contains(names, s.Baseline) {
			names = append(names, s.Baseline)
		}
	}
	return Select(names)
}

// Validity runs the validity benchmark and returns its report, which is
// never nil; the error says why the run could not complete.
func Validity(ctx context.Context, cfg ValidityConfig) (*ValidityReport, error) {
	rep := &ValidityReport{StartedAt: time.Now(), Probes: cfg.Probes, Hosts: cfg.Hosts, Pace: cfg.Pace.String()}
	err := runValidity(ctx, cfg, rep)
	rep.DurationMS = time.Since(rep.StartedAt).Milliseconds()
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

func runValidity(ctx context.Context, cfg ValidityConfig, rep *ValidityReport) (err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Probes <= 0 || cfg.Pace < 0 {
		return errors.New("testbed: validity needs a positive number of probes and a pace not below zero")
	}
	scenarios, err := ValidityScenarios(cfg.Scenarios)
	if err != nil {
		return err
	}
	b, err := prepare(ctx, cfg.BinDir, scenarios, cfg.Hosts, log)
	if err != nil {
		return err
	}
	rep.RunID = b.id
	if out, verr := exec.CommandContext(ctx, b.agentBin(), "version").Output(); verr == nil {
		rep.AgentVersion = strings.TrimSpace(strings.TrimPrefix(string(out), AgentBin))
	}
	defer func() {
		err = errors.Join(err, b.close(ctx))
		for i := range rep.Scenarios {
			rep.Scenarios[i].Link = b.linkReports[rep.Scenarios[i].Name]
		}
	}()
	if err := b.setUp(ctx); err != nil {
		return err
	}
	b.log.Info("validity: testbed up; measuring", "scenarios", len(scenarios), "probes", cfg.Probes, "hosts", cfg.Hosts)
	tallies := make([]*tally, len(b.topo.sites))
	var wg sync.WaitGroup
	for i, s := range b.topo.sites {
		tallies[i] = newTally(s.scenario)
		for h := range s.hosts {
			wg.Go(func() { b.measure(ctx, s, h, cfg, tallies[i]) })
		}
	}
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var progress []string
				for _, t := range tallies {
					progress = append(progress, t.progress(cfg.Probes))
				}
				b.log.Info("validity: progress", "probes", strings.Join(progress, " "))
			}
		}
	}()
	wg.Wait()
	close(stop)
	if ctx.Err() != nil {
		return fmt.Errorf("testbed: interrupted: %w", context.Cause(ctx))
	}
	for _, t := range tallies {
		rep.Scenarios = append(rep.Scenarios, t.result())
	}
	return b.checkChildren()
}

func (b *bed) agentBin() string { return filepath.Join(b.binDir, AgentBin) }

// measure runs rounds of s on host h until the scenario has its probes.
func (b *bed) measure(ctx context.Context, s site, h int, cfg ValidityConfig, t *tally) {
	perRound := len(s.scenario.Expect.Probes()) * s.scenario.agents()
	var last time.Time
	for ctx.Err() == nil && t.claim(cfg.Probes, perRound) {
		if wait := time.Until(last.Add(cfg.Pace)); wait > 0 && !sleep(ctx, wait) {
			return
		}
		last = time.Now()
		runs := b.round(ctx, s, h, 0)
		if ctx.Err() != nil {
			return
		}
		t.add(runs, perRound)
	}
}

// tally adds up the rounds of one scenario.
type tally struct {
	sc Scenario

	mu      sync.Mutex
	pending int // probes of rounds under way
	res     ValidityScenario
	rounds  []int64
	rtts    []int64 // µs
}

func newTally(sc Scenario) *tally {
	return &tally{sc: sc, res: ValidityScenario{Name: sc.Name, Description: sc.Doc, Baseline: sc.Baseline,
		Noisy: sc.Noisy(), Verdicts: map[string]int{}, Failures: map[string]int{}}}
}

// claim reserves a round of perRound probes unless the scenario has (or
// will have, with the rounds under way) its probes, or its agents keep
// failing.
func (t *tally) claim(want, perRound int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.res.AgentErrors >= maxAgentErrors {
		t.res.Error = fmt.Sprintf("stopped after %d agent runs without a report", t.res.AgentErrors)
		return false
	}
	if t.res.Probes+t.pending >= want {
		return false
	}
	t.pending += perRound
	return true
}

func (t *tally) add(runs []agentRun, perRound int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending -= perRound
	for _, r := range runs {
		t.res.Rounds++
		t.rounds = append(t.rounds, r.ms)
		if r.report == nil {
			t.res.AgentErrors++
			continue
		}
		for _, row := range Compare(t.sc, r.report, r.err) {
			t.count(row)
		}
	}
}

// count adds one row.
func (t *tally) count(row Row) {
	if row.Got == noResult {
		return
	}
	t.res.Probes++
	t.res.Verdicts[row.Got]++
	if row.ControlRTTMS > 0 { // zero: the control port was not reached
		t.rtts = append(t.rtts, int64(row.ControlRTTMS*1000))
	}
	got, _ := verdict.Parse(row.Got)
	want, _ := verdict.Parse(row.Expected)
	if got == verdict.Inconclusive {
		t.res.Failures[row.Failure]++
	}
	wrong := true
	switch {
	case got == want && (t.sc.Failure == "" || want == verdict.Open || row.Failure == t.sc.Failure):
		t.res.Expected++
		wrong = false
	case got == verdict.Inconclusive:
		t.res.Inconclusive++
		wrong = false
	case got.Blocked():
		t.res.FalseBlocked++
	case got == verdict.Intercepted || got == verdict.Tampered:
		t.res.FalseIntercepted++
	default:
		t.res.FalseOther++
	}
	if wrong && len(t.res.FalseRows) < 5 {
		t.res.FalseRows = append(t.res.FalseRows, row)
	}
}

func (t *tally) progress(want int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%s=%d/%d", t.sc.Name, t.res.Probes, want)
}

func (t *tally) result() ValidityScenario {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.res
	r.RoundP50MS, r.RoundP99MS = percentile(t.rounds, 0.50), percentile(t.rounds, 0.99)
	if len(t.rounds) > 0 {
		r.RoundMaxMS = slices.Max(t.rounds)
	}
	r.ControlRTTP50MS = float64(percentile(t.rtts, 0.50)) / 1000
	return r
}

// percentile returns the nearest-rank q-quantile of xs, 0 when empty.
func percentile(xs []int64, q float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// InconclusiveShare is the share of probes that got INCONCLUSIVE where
// another verdict was expected.
func (v ValidityScenario) InconclusiveShare() float64 {
	if v.Probes == 0 {
		return 0
	}
	return float64(v.Inconclusive) / float64(v.Probes)
}

// Goals of issue 9, checked per scenario by WriteMarkdown.
const (
	goalFalseInterceptedPer1000 = 1.0
	goalInconclusiveAtLoss      = 0.05
	lossGoalScenario            = "loss20"
)

// WriteFile writes the report as indented JSON.
func (r *ValidityReport) WriteFile(path string) error { return writeJSON(path, r) }

// Command is the op25b-testbed command line that reproduces the run, with
// the binaries in out/ (as make validity builds them).
func (c ValidityConfig) Command() string {
	cmd := fmt.Sprintf("op25b-testbed validity --bin out --probes %d --hosts %d --pace %s", c.Probes, c.Hosts, c.Pace)
	if len(c.Scenarios) > 0 {
		cmd += " --scenario " + strings.Join(c.Scenarios, ",")
	}
	return cmd
}

// WriteMarkdown writes the "## Validity" section of BENCHMARKS.md.
func (r *ValidityReport) WriteMarkdown(w io.Writer, cfg ValidityConfig) error {
	byName := make(map[string]ValidityScenario)
	for _, s := range r.Scenarios {
		byName[s.Name] = s
	}
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Validity\n\n")
	p("Written by `make validity` (deploy/validity.sh) on %s, %d cores (%s), agent %s; it took %s.\n",
		r.StartedAt.UTC().Format("2006-01-02"), runtime.NumCPU(), cpu, r.AgentVersion,
		(time.Duration(r.DurationMS) * time.Millisecond).Round(time.Second))
	p("Command: `%s`.\n\n", cfg.Command())
	p("Every scenario below ran in the emulated-ISP testbed (docs/testbed.md) round after round of\n")
	p("`op25b-agent check` with the agent's default flags, from %d agent hosts in parallel, each with its\n", r.Hosts)
	p("own address and a round started at most every %s per host (the CGNAT: %d agents at once from\n", r.Pace, CGNATAgents)
	p("one address), until at least %d probes (reference MTA × port × family). A false verdict is a\n", r.Probes)
	p("conclusive verdict other than the scenario's expectation; INCONCLUSIVE (could not tell) where a\n")
	p("conclusive verdict was expected is counted apart (`refmta-busy` expects INCONCLUSIVE with\n")
	p("failure refmta_busy). The limit of each round duration is its baseline's (the same filtering, no\n")
	p("impairment, one agent), measured in the same run.\n\n")
	p("| scenario | probes (rounds) | verdicts | false BLOCKED | false INTERCEPTED or TAMPERED | other false | INCONCLUSIVE where a verdict was expected | round p50 / p99 | limit: baseline round p50 / p99 | ratio (p50) |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		limit, ratio := "", ""
		if base, ok := byName[s.Baseline]; ok && s.Baseline != "" {
			limit = fmt.Sprintf("`%s`: %s / %s", base.Name, secs(base.RoundP50MS), secs(base.RoundP99MS))
			if base.RoundP50MS > 0 {
				ratio = fmt.Sprintf("%.2f", float64(s.RoundP50MS)/float64(base.RoundP50MS))
			}
		}
		p("| `%s` | %d (%d) | %s | %d | %d (%s per 1,000) | %d | %d (%.1f%%) | %s / %s | %s | %s |\n",
			s.Name, s.Probes, s.Rounds, verdictCounts(s.Verdicts), s.FalseBlocked, s.FalseIntercepted,
			per1000(s.FalseIntercepted, s.Probes), s.FalseOther, s.Inconclusive, 100*s.InconclusiveShare(),
			secs(s.RoundP50MS), secs(s.RoundP99MS), limit, ratio)
	}
	p("\nGoals (issue 9), each against what this run measured:\n\n")
	p("| goal | scenario | measured | met |\n|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		if s.Baseline == "" {
			continue
		}
		p("| zero false BLOCKED | `%s` | %d of %d | %s |\n", s.Name, s.FalseBlocked, s.Probes, yes(s.FalseBlocked == 0 && s.Probes > 0))
		rate := 0.0
		if s.Probes > 0 {
			rate = 1000 * float64(s.FalseIntercepted) / float64(s.Probes)
		}
		p("| at most 1 false INTERCEPTED or TAMPERED per 1,000 probes | `%s` | %s per 1,000 | %s |\n",
			s.Name, per1000(s.FalseIntercepted, s.Probes), yes(s.Probes > 0 && rate <= goalFalseInterceptedPer1000))
		if s.Name == lossGoalScenario {
			p("| INCONCLUSIVE under 5%% at 20%% loss | `%s` | %.1f%% | %s |\n", s.Name, 100*s.InconclusiveShare(),
				yes(s.Probes > 0 && s.InconclusiveShare() < goalInconclusiveAtLoss))
		}
	}
	p("\nThe impaired links as measured by their impair process over the whole run (loss: packets\n")
	p("dropped of those received; delay: one way, from read to write), and the agents' control-port\n")
	p("connect time (one round trip when the SYN is not lost):\n\n")
	p("| scenario | asked (each way) | down: lost, delay p50 / p99 | up: lost, delay p50 / p99 | control connect p50 |\n|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		if s.Link == nil {
			continue
		}
		dir := func(st impair.Stats) string {
			return fmt.Sprintf("%.1f%% of %d, %.0f / %.0f ms", 100*st.LossRate(), st.Received, st.DelayP50MS, st.DelayP99MS)
		}
		p("| `%s` | %s | %s | %s | %.1f ms |\n", s.Name, s.Link.Down.Shape, dir(s.Link.Down), dir(s.Link.Up), s.ControlRTTP50MS)
	}
	var notes []string
	for _, s := range r.Scenarios {
		if len(s.Failures) > 0 {
			notes = append(notes, fmt.Sprintf("`%s`: %s", s.Name, countList(s.Failures)))
		}
	}
	if len(notes) > 0 {
		p("\nFailure classes of the INCONCLUSIVE probes: %s.\n", strings.Join(notes, "; "))
	}
	var errs []string
	for _, s := range r.Scenarios {
		if s.Error != "" || s.AgentErrors > 0 {
			errs = append(errs, fmt.Sprintf("`%s`: %d agent runs of %d without a report %s", s.Name, s.AgentErrors, s.Rounds, s.Error))
		}
	}
	if len(errs) > 0 {
		p("\nAgent runs that gave no report: %s.\n", strings.Join(errs, "; "))
	}
	if r.Error != "" {
		p("\nThe run did not complete: %s\n", r.Error)
	}
	p("\nThe report with the first false verdicts' details: `out/validity-report.json`. Reproduce: `make validity` (root).\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(ms int64) string { return fmt.Sprintf("%.1f s", float64(ms)/1000) }

func per1000(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", 1000*float64(n)/float64(of))
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// verdictCounts lists the verdicts in the order of verdict.All.
func verdictCounts(m map[string]int) string {
	var parts []string
	for _, v := range verdict.All {
		if n := m[v.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", v, n))
		}
	}
	return strings.Join(parts, ", ")
}

// countList lists counts, largest first.
func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %d", name, m[k])
	}
	return strings.Join(parts, ", ")
}
