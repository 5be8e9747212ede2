package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// finish stops the reference MTAs, reads the agents' logs and spools and
// the database, tallies each phase, stops the collector and fills rep.
func (r *rig) finish(ctx context.Context, rep *Report, runs []*phaseRun) error {
	r.stopAgents()
	for _, p := range r.refmtas {
		p.stop(10 * time.Second)
	}
	logs, _, err := r.agentLogs()
	if err != nil {
		return err
	}
	stored, err := r.db.rounds(ctx)
	if err != nil {
		return fmt.Errorf("chaos: read the stored results: %w", err)
	}
	pending, err := r.readSpools()
	if err != nil {
		return err
	}
	final, err := r.db.reported(ctx)
	if err != nil {
		return fmt.Errorf("chaos: read the reported losses: %w", err)
	}
	rep.ReportedSource = lossSource
	var windows []Window
	for i, p := range runs {
		w := Window{Name: p.row.Phase, Start: p.start, End: p.end}
		if i == 0 {
			w.Start = time.Time{} // the first rounds, before the first phase
		}
		windows = append(windows, w)
	}
	tallies := Account(logs, stored, pending, windows)
	lostBy, unacked := r.lostByAgent(logs, stored, pending, windows)
	var seen []map[string]int64
	for _, p := range runs {
		seen = append(seen, p.reported)
	}
	reported, reportedBy := ReportedByPhase(unacked, seen, final)
	total := Row{Phase: "all phases", AgeAfter: -1, AgeWorst: -1, IngestWentOn: true}
	for i, p := range runs {
		row := p.row
		row.Tally = tallies[i]
		row.Reported = reported[i]
		if by := lostBy[i]; len(by) > 0 {
			var parts []string
			for name, n := range by {
				parts = append(parts, fmt.Sprintf("%s %d", name, n))
			}
			sort.Strings(parts)
			row.Notes = append(row.Notes, "lost, by agent: "+strings.Join(parts, ", "))
			switch k := reportedBy[i]; {
			case k == i:
				row.Notes = append(row.Notes, "the collector had every loss on record by the phase's end")
			case k > i && k < len(runs):
				row.Notes = append(row.Notes, fmt.Sprintf("the collector had every loss on record by the end of phase %s (an agent reports its losses when it next reaches the collector)", runs[k].row.Phase))
			case k == len(runs):
				row.Notes = append(row.Notes, "the collector had every loss on record only at the end of the run")
			}
		}
		if n, err := r.db.openAttributedElsewhere(ctx, p.start, p.end); err == nil && n > 0 {
			row.Notes = append(row.Notes, fmt.Sprintf("%d OPEN results attributed from a connection, not from a signed statement of the reference MTA", n))
		}
		total.Tally.Add(row.Tally)
		total.AgeAfter = max(total.AgeAfter, row.AgeAfter)
		total.AgeWorst = max(total.AgeWorst, row.AgeWorst)
		if row.ClientFlood {
			total.ClientFlood = true
			total.IngestWentOn = total.IngestWentOn && row.IngestWentOn
		}
		rep.Rows = append(rep.Rows, row)
	}
	for _, n := range final {
		total.Reported += n
	}
	switch {
	case !total.ClientFlood:
		total.Ingest = "-"
	case total.IngestWentOn:
		total.Ingest = "went on under every client-side flood"
	default:
		total.Ingest = "stopped under a client-side flood"
	}
	rep.Total = total
	rep.Notes = append(rep.Notes, "All phases: reported lost is the collector's figure per agent at the end (spool_loss), summed.")

	rep.Notes = append(rep.Notes, r.orphanCheck(ctx))
	version, _ := exec.Command(filepath.Join(r.cfg.BinDir, collectorBin), "version").Output()
	rep.Setup = fmt.Sprintf("%d agents (%d on an ordinary disk; agent-tmpfs with its spool on a tmpfs of its own; agent-router with "+
		"`--spool-max-bytes 1048576`, as docs/volunteer.md advises for routers), each in a network namespace, AS and /24 of its own, "+
		"probing two reference MTAs (25, 587, 465 and the control port, IPv4 and IPv6) every %s; collector `--refresh-every %s`, "+
		"RLIMIT_NOFILE %d, data directory (its PostgreSQL) on a %d MiB tmpfs; %s; %d cores, %s.",
		len(r.agents), len(r.agents)-2, r.cfg.Interval, r.cfg.RefreshEvery, r.cfg.CollectorNofile, r.cfg.CollectorDisk>>20,
		strings.TrimSpace(string(version)), runtime.NumCPU(), runtime.Version())
	return nil
}

// lostByAgent tallies each agent alone: for each window, how many results
// each agent lost (by name).
func (r *rig) lostByAgent(logs []AgentLog, stored map[RoundKey]Stored, pending map[RoundKey]int, windows []Window) (byName, unackedByID []map[string]int) {
	out := make([]map[string]int, len(windows))
	unackedByID = make([]map[string]int, len(windows))
	for i := range out {
		out[i], unackedByID[i] = map[string]int{}, map[string]int{}
	}
	for k, l := range logs {
		mine := func(id RoundKey) bool { return id.Agent == l.ID }
		st, pe := map[RoundKey]Stored{}, map[RoundKey]int{}
		for id, v := range stored {
			if mine(id) {
				st[id] = v
			}
		}
		for id, v := range pending {
			if mine(id) {
				pe[id] = v
			}
		}
		for i, t := range Account([]AgentLog{l}, st, pe, windows) {
			if t.Lost > 0 {
				out[i][r.agents[k].name] = t.Lost
			}
			if n := t.Lost - t.LostAcked; n > 0 {
				unackedByID[i][l.ID] = n
			}
		}
	}
	return out, unackedByID
}

// orphanCheck kills the collector with SIGKILL, lets its supervisor start
// it again (it finds its PostgreSQL running and attaches), then stops it
// cleanly: the PostgreSQL it runs must stop with it, whichever collector
// process started it (issue 10, point 8). It says what happened.
func (r *rig) orphanCheck(ctx context.Context) string {
	from := fileSize(r.logPath("collector"))
	_, starts := r.coll.since()
	r.coll.kill()
	if err := r.coll.waitStarted(ctx, starts); err != nil {
		return "The check for an orphaned PostgreSQL could not run: " + err.Error()
	}
	if err := r.waitCollector(ctx, from); err != nil {
		return "The check for an orphaned PostgreSQL could not run: " + err.Error()
	}
	r.coll.stop(30 * time.Second)
	if _, _, alive := r.db.postmaster(); alive {
		return "At the end, the collector was killed (SIGKILL), started again, then stopped cleanly (SIGTERM): its embedded PostgreSQL was still running (orphaned; issue 10, point 8)."
	}
	return "At the end, the collector was killed (SIGKILL), started again, then stopped cleanly (SIGTERM): its embedded PostgreSQL stopped with it."
}
