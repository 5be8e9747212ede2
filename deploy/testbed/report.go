package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/op25b/observatory/deploy/testbed/impair"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Report is the outcome of one testbed run, as written by --report. It is a
// test report for people and CI, not a dataset: field names may change.
type Report struct {
	RunID        string           `json:"run_id"`
	StartedAt    time.Time        `json:"started_at"`
	SetupMS      int64            `json:"setup_ms"`
	DurationMS   int64            `json:"duration_ms"`
	ProbeTimeout string           `json:"probe_timeout"`
	Passed       bool             `json:"passed"`
	Error        string           `json:"error,omitempty"`
	Scenarios    []ScenarioReport `json:"scenarios"`
	// RefMTALog is the end of the reference MTAs' logs, kept when
	// anything failed.
	RefMTALog string `json:"refmta_log,omitempty"`
}

// ScenarioReport is one scenario: its agent runs and their rows.
type ScenarioReport struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Passed      bool   `json:"passed"`
	// Noisy scenarios tolerate INCONCLUSIVE rows (Scenario.Noisy).
	Noisy  bool          `json:"noisy,omitempty"`
	Agents []AgentReport `json:"agents"`
	// Kept when the scenario failed: the router's ruleset with its
	// counters, and the middleboxes' logs.
	Ruleset       string `json:"isp_ruleset,omitempty"`
	MiddleboxLogs string `json:"middlebox_logs,omitempty"`
	// Link is what the impaired link did, as its impair process counted.
	Link *LinkReport `json:"link,omitempty"`
	Rows []Row       `json:"rows"`
}

// AgentReport is one agent process.
type AgentReport struct {
	MS   int64 `json:"ms"`
	Exit int   `json:"exit_code"`
	// Error says why the agent run produced no usable report.
	Error string `json:"error,omitempty"`
	// Stderr is kept when the run or one of its rows failed.
	Stderr string `json:"stderr,omitempty"`
}

// LinkReport is what an impaired uplink did in each direction: Down from
// transit to the ISP's router (towards the agents), Up back.
type LinkReport struct {
	Down impair.Stats `json:"down"`
	Up   impair.Stats `json:"up"`
}

// String summarises the link as measured.
func (l *LinkReport) String() string {
	dir := func(name string, s impair.Stats) string {
		return fmt.Sprintf("%s %.1f%% of %d packets lost, delay p50 %.0f ms p99 %.0f ms",
			name, 100*s.LossRate(), s.Received, s.DelayP50MS, s.DelayP99MS)
	}
	return fmt.Sprintf("%s (asked: %s); %s", dir("down", l.Down), l.Down.Shape, dir("up", l.Up))
}

// Row compares one probe with its expectation.
type Row struct {
	RefMTA string `json:"refmta"`
	// Agent numbers the agent process from 1 when a round has several.
	Agent    int    `json:"agent,omitempty"`
	Port     uint16 `json:"port"`
	Family   string `json:"family"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	Pass     bool   `json:"pass"`
	// Tolerated is an INCONCLUSIVE that passed because the scenario is
	// noisy.
	Tolerated bool   `json:"tolerated,omitempty"`
	Failure   string `json:"failure,omitempty"`
	Detail    string `json:"detail,omitempty"`
	// ProbeMS is the probe's total time as the agent measured it, and
	// ControlRTTMS the TCP connect time of the control probe before it.
	ProbeMS      int64   `json:"probe_ms,omitempty"`
	ControlRTTMS float64 `json:"control_rtt_ms,omitempty"`
}

// noResult stands for a verdict the agent did not report.
const noResult = "NO_RESULT"

// Compare matches an agent's report against the scenario's expectations,
// one row per reference MTA, port and family of the scenario, in table
// order. A nil report (the agent produced none) fails every row with
// reason. Results for other ports or reference MTAs (none are expected)
// are not rows.
func Compare(sc Scenario, rep *op25bv1.ProbeReport, reason string) []Row {
	found := make(map[Probe][]*op25bv1.ProbeResult)
	for _, r := range rep.GetResults() {
		a, err := netip.ParseAddr(r.GetTargetAddress())
		if err != nil {
			continue
		}
		m, ok := refmtaAt(a.Unmap())
		if !ok {
			continue
		}
		p := Probe{RefMTA: m, Port: uint16(r.GetPort()), Family: familyOf(r.GetFamily())}
		found[p] = append(found[p], r)
	}
	var rows []Row
	for _, p := range sc.Expect.Probes() {
		want := sc.Expect.Want(p)
		row := Row{RefMTA: string(p.RefMTA), Port: p.Port, Family: p.Family.String(), Expected: want.String(), Got: noResult}
		switch rs := found[p]; {
		case rep == nil:
			row.Detail = reason
		case len(rs) == 0:
			row.Detail = "the agent reported no result for this reference MTA, port and family"
		case len(rs) > 1:
			row.Detail = fmt.Sprintf("the agent reported %d results for this reference MTA, port and family", len(rs))
		default:
			r := rs[0]
			got := verdict.Verdict(r.GetVerdict())
			row.Got = got.String()
			row.Failure = r.GetFailure()
			row.Detail = r.GetDetail()
			row.ProbeMS = r.GetTimings().GetTotal().AsDuration().Milliseconds()
			row.ControlRTTMS = float64(r.GetControl().GetRtt().AsDuration()) / float64(time.Millisecond)
			switch {
			case got == want && sc.Failure != "" && want != verdict.Open && row.Failure != sc.Failure:
				row.Detail = fmt.Sprintf("want failure %s; %s", sc.Failure, row.Detail)
			case got == want:
				row.Pass = true
			case got == verdict.Inconclusive && sc.Noisy():
				row.Pass, row.Tolerated = true, true
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func familyOf(f op25bv1.AddressFamily) Family {
	switch f {
	case op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4:
		return IPv4
	case op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6:
		return IPv6
	}
	return 0
}

// scenarioReport compares the agent runs of one round of sc.
func scenarioReport(sc Scenario, runs []agentRun) ScenarioReport {
	sr := ScenarioReport{Name: sc.Name, Description: sc.Doc, Noisy: sc.Noisy()}
	for i, r := range runs {
		rows := Compare(sc, r.report, r.err)
		ar := AgentReport{MS: r.ms, Exit: r.exit, Error: r.err}
		for j := range rows {
			if len(runs) > 1 {
				rows[j].Agent = i + 1
			}
			if !rows[j].Pass || r.err != "" {
				ar.Stderr = r.stderr
			}
		}
		sr.Rows = append(sr.Rows, rows...)
		sr.Agents = append(sr.Agents, ar)
	}
	sr.Passed = sr.passed()
	return sr
}

// passed reports whether every row passed and every agent ran.
func (s *ScenarioReport) passed() bool {
	if len(s.Rows) == 0 {
		return false
	}
	for _, a := range s.Agents {
		if a.Error != "" {
			return false
		}
	}
	for _, r := range s.Rows {
		if !r.Pass {
			return false
		}
	}
	return true
}

// Verdicts returns the distinct verdicts the agent reported in the run.
func (r *Report) Verdicts() map[string]bool {
	got := make(map[string]bool)
	for _, s := range r.Scenarios {
		for _, row := range s.Rows {
			got[row.Got] = true
		}
	}
	return got
}

// maxDetail bounds the detail column of the table; the JSON report has
// the whole sentence.
const maxDetail = 100

// WriteTable prints the pass/fail table, one line per scenario, reference
// MTA, port and family (the rows of a scenario's agents together: GOT
// counts each verdict when they differ), then what the impaired links
// measured and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tREFMTA\tPORT\tFAMILY\tEXPECTED\tGOT\tRESULT\tDETAIL")
	rows, failed, tolerated := 0, 0, 0
	for _, s := range r.Scenarios {
		for _, g := range groupRows(s.Rows) {
			rows += len(g)
			res, note := "PASS", g[0]
			n := 0
			for _, row := range g {
				switch {
				case !row.Pass:
					failed++
					if res != "FAIL" {
						res, note = "FAIL", row
					}
				case row.Tolerated:
					tolerated++
					n++
					if res == "PASS" {
						note = row
					}
				}
			}
			if res == "PASS" && n > 0 {
				res = fmt.Sprintf("PASS (%d INCONCLUSIVE)", n)
			}
			detail := note.Detail
			if note.Failure != "" {
				detail = note.Failure + ": " + detail
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
				s.Name, g[0].RefMTA, g[0].Port, g[0].Family, g[0].Expected, gotColumn(g), res, clip(detail, maxDetail))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		for i, a := range s.Agents {
			if a.Error != "" {
				fmt.Fprintf(w, "%s agent %d: %s (the report has its stderr)\n", s.Name, i+1, clip(a.Error, 2*maxDetail))
			}
		}
		if s.Link != nil {
			fmt.Fprintf(w, "%s link: %s\n", s.Name, s.Link)
		}
	}
	status := "PASS"
	if !r.Passed {
		status = "FAIL"
	}
	_, err := fmt.Fprintf(w, "%s: %d of %d rows passed (%d INCONCLUSIVE tolerated), %d scenarios, %s\n",
		status, rows-failed, rows, tolerated, len(r.Scenarios), time.Duration(r.DurationMS)*time.Millisecond)
	return err
}

// groupRows groups the rows of a scenario's agents by reference MTA, port
// and family, in the order they first appear.
func groupRows(rows []Row) [][]Row {
	type key struct {
		refmta, family string
		port           uint16
	}
	var order []key
	groups := make(map[key][]Row)
	for _, r := range rows {
		k := key{r.RefMTA, r.Family, r.Port}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([][]Row, len(order))
	for i, k := range order {
		out[i] = groups[k]
	}
	return out
}

// gotColumn is the verdict of a group of rows, or how many rows got each
// verdict when they differ ("OPEN×97 INCONCLUSIVE×3").
func gotColumn(g []Row) string {
	count := make(map[string]int)
	var order []string
	for _, r := range g {
		if count[r.Got] == 0 {
			order = append(order, r.Got)
		}
		count[r.Got]++
	}
	if len(order) == 1 {
		return order[0]
	}
	slices.SortFunc(order, func(a, b string) int { return count[b] - count[a] })
	parts := make([]string, len(order))
	for i, v := range order {
		parts[i] = fmt.Sprintf("%s×%d", v, count[v])
	}
	return strings.Join(parts, " ")
}

// WriteFile writes the report as indented JSON.
func (r *Report) WriteFile(path string) error { return writeJSON(path, r) }

// writeJSON writes v to path as indented JSON.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("testbed: report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("testbed: report: %w", err)
	}
	return nil
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// exitCode renders a process's exit status for the report: -1 when it did
// not exit normally (killed, never started).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}
