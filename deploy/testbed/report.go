package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

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
	// RefMTALog is the end of the reference MTA's log, kept when anything
	// failed.
	RefMTALog string `json:"refmta_log,omitempty"`
}

// ScenarioReport is one scenario: the agent run and its rows.
type ScenarioReport struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Passed      bool   `json:"passed"`
	AgentMS     int64  `json:"agent_ms"`
	AgentExit   int    `json:"agent_exit_code"`
	// AgentError says why the agent run produced no usable report.
	AgentError string `json:"agent_error,omitempty"`
	// Kept when the scenario failed: what the agent wrote to stderr, the
	// router's ruleset with its counters, and the middleboxes' logs.
	AgentStderr   string `json:"agent_stderr,omitempty"`
	Ruleset       string `json:"isp_ruleset,omitempty"`
	MiddleboxLogs string `json:"middlebox_logs,omitempty"`
	Rows          []Row  `json:"rows"`
}

// Row compares one (port, family) of a scenario with its expectation.
type Row struct {
	Port     uint16 `json:"port"`
	Family   string `json:"family"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	Pass     bool   `json:"pass"`
	Failure  string `json:"failure,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// ProbeMS is the probe's total time as the agent measured it.
	ProbeMS int64 `json:"probe_ms,omitempty"`
}

// noResult stands for a verdict the agent did not report.
const noResult = "NO_RESULT"

// Compare matches an agent's report against the scenario's expectations,
// one row per port and family of the scenario, in table order. A nil
// report (the agent produced none) fails every row with reason. Results
// for other ports (none are expected) are not rows.
func Compare(sc Scenario, rep *op25bv1.ProbeReport, reason string) []Row {
	found := make(map[Probe][]*op25bv1.ProbeResult)
	for _, r := range rep.GetResults() {
		p := Probe{Port: uint16(r.GetPort()), Family: familyOf(r.GetFamily())}
		found[p] = append(found[p], r)
	}
	var rows []Row
	for _, port := range Ports {
		for _, fam := range Families {
			p := Probe{Port: port, Family: fam}
			want := sc.Expect.Want(p)
			row := Row{Port: port, Family: fam.String(), Expected: want.String(), Got: noResult}
			switch rs := found[p]; {
			case rep == nil:
				row.Detail = reason
			case len(rs) == 0:
				row.Detail = "the agent reported no result for this port and family"
			case len(rs) > 1:
				row.Detail = fmt.Sprintf("the agent reported %d results for this port and family", len(rs))
			default:
				r := rs[0]
				got := verdict.Verdict(r.GetVerdict())
				row.Got = got.String()
				row.Pass = got == want
				row.Failure = r.GetFailure()
				row.Detail = r.GetDetail()
				row.ProbeMS = r.GetTimings().GetTotal().AsDuration().Milliseconds()
			}
			rows = append(rows, row)
		}
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

// passed reports whether every row passed and the agent ran.
func (s *ScenarioReport) passed() bool {
	if s.AgentError != "" || len(s.Rows) == 0 {
		return false
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

// WriteTable prints the pass/fail table, one row per scenario, port and
// family, then a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPORT\tFAMILY\tEXPECTED\tGOT\tRESULT\tDETAIL")
	rows, failed := 0, 0
	for _, s := range r.Scenarios {
		for _, row := range s.Rows {
			res := "PASS"
			if !row.Pass {
				res = "FAIL"
				failed++
			}
			rows++
			detail := row.Detail
			if row.Failure != "" {
				detail = row.Failure + ": " + detail
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
				s.Name, row.Port, row.Family, row.Expected, row.Got, res, clip(detail, maxDetail))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		if s.AgentError != "" {
			fmt.Fprintf(w, "%s: %s (the report has its stderr)\n", s.Name, clip(s.AgentError, 2*maxDetail))
		}
	}
	status := "PASS"
	if !r.Passed {
		status = "FAIL"
	}
	_, err := fmt.Fprintf(w, "%s: %d of %d rows passed, %d scenarios, %s\n",
		status, rows-failed, rows, len(r.Scenarios), time.Duration(r.DurationMS)*time.Millisecond)
	return err
}

// WriteFile writes the report as indented JSON.
func (r *Report) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
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
