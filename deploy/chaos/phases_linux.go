package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// phaseRun is one phase as it runs.
type phaseRun struct {
	row        Row
	start, end time.Time
	logFrom    int64 // the collector's log offset when the phase began
	// aged: the phase read the rollups' age itself (on a clock it then
	// set back).
	aged bool
	// reported is the collector's per-agent loss figures at its end.
	reported map[string]int64
}

func (p *phaseRun) note(format string, args ...any) {
	p.row.Notes = append(p.row.Notes, fmt.Sprintf(format, args...))
}

// phases runs the selected phases in order, then the drain.
func (r *rig) phases(ctx context.Context) ([]*phaseRun, error) {
	funcs := map[string]func(context.Context, *phaseRun) error{
		PhaseBaseline:      r.baseline,
		PhaseCollectorKill: r.collectorKill,
		PhaseAgentKill:     r.agentKill,
		PhasePostgresKill:  r.postgresKill,
		PhasePostgresStop:  r.postgresStop,
		PhaseSpoolENOSPC:   r.spoolENOSPC,
		PhaseDiskFull:      r.diskFull,
		PhaseIdleConns:     r.idleConns,
		PhaseRequestFlood:  r.requestFlood,
		PhaseQuiet:         r.quiet,
		PhaseMidnight:      r.midnight,
		PhaseDrain:         r.drain,
	}
	var runs []*phaseRun
	before := r.reportedNow(ctx, nil)
	for _, name := range append(slices.Clone(AllPhases), PhaseDrain) {
		if name != PhaseDrain && len(r.cfg.Phases) > 0 && !slices.Contains(r.cfg.Phases, name) {
			continue
		}
		p := &phaseRun{start: time.Now(), logFrom: fileSize(r.logPath("collector")),
			row: Row{Phase: name, AgeAfter: -1, AgeWorst: -1}}
		r.progress("phase %s", name)
		if err := funcs[name](ctx, p); err != nil {
			return nil, fmt.Errorf("chaos: phase %s: %w", name, err)
		}
		p.end = time.Now()
		if !p.aged {
			p.row.AgeAfter = r.ageNow(ctx)
		}
		p.row.AgeWorst = max(r.worstAge(p.start, p.end), p.row.AgeAfter)
		p.reported = r.reportedNow(ctx, before)
		before = p.reported
		r.collectorLogNotes(p)
		r.progress("phase %s done: rollups %s refresh periods old; %s", name, age(p.row.AgeAfter), p.row.Ingest)
		runs = append(runs, p)
	}
	return runs, nil
}

// reportedNow reads the collector's loss figures, retrying for a while;
// it returns last when the database cannot be read.
func (r *rig) reportedNow(ctx context.Context, last map[string]int64) map[string]int64 {
	for range 20 {
		if m, err := r.db.reported(ctx); err == nil {
			return m
		}
		if sleep(ctx, 500*time.Millisecond) != nil {
			break
		}
	}
	return last
}

// collectorLogNotes adds what the collector logged during the phase.
func (r *rig) collectorLogNotes(p *phaseRun) {
	path := r.logPath("collector")
	if n := countInLog(path, p.logFrom, -1, "rollups failed"); n > 0 {
		ticks := int(p.end.Sub(p.start) / r.cfg.RefreshEvery)
		p.note("the collector logged %d failed refreshes of the rollups (about %d refresh ticks)", n, ticks)
	}
	if n := countInLog(path, p.logFrom, -1, "too many open files"); n > 0 {
		p.note("the collector logged %d errors \"too many open files\"", n)
	}
	if n := countInLog(path, p.logFrom, -1, "storing results failed"); n > 0 {
		p.note("the collector logged %d failed batch inserts (not acknowledged)", n)
	}
}

func (r *rig) settle(ctx context.Context) error { return sleep(ctx, r.cfg.Settle) }

func (r *rig) baseline(ctx context.Context, p *phaseRun) error {
	p.row.Fault = "none"
	if err := sleep(ctx, r.cfg.Baseline); err != nil {
		return err
	}
	got, err := r.db.receivedBetween(ctx, p.start, time.Now())
	if err != nil {
		return err
	}
	p.row.Ingest = fmt.Sprintf("%d results stored in %s", sum(got), r.cfg.Baseline)
	return nil
}

// collectorKill kills the collector with SIGKILL right after a batch was
// stored, Kills times; its supervisor starts it again a second later.
func (r *rig) collectorKill(ctx context.Context, p *phaseRun) error {
	var resumed []time.Duration
	for k := 0; k < r.cfg.Kills; k++ {
		started, starts := r.coll.since()
		t, ok := r.waitIngest(ctx, started, r.cfg.Recover)
		if !ok {
			p.note("kill %d: no batch stored within %s of the collector's start", k+1, r.cfg.Recover)
			break
		}
		if k > 0 {
			resumed = append(resumed, t.Sub(started))
		}
		// Uploads arrive every few hundred milliseconds: kill while the
		// next ones are in flight.
		r.waitFreshBatch(ctx, 300*time.Millisecond)
		from := fileSize(r.logPath("collector"))
		r.coll.kill()
		if err := r.coll.waitStarted(ctx, starts); err != nil {
			return err
		}
		if err := r.waitCollector(ctx, from); err != nil {
			return err
		}
	}
	started, _ := r.coll.since()
	if t, ok := r.waitIngest(ctx, started, r.cfg.Recover); ok {
		resumed = append(resumed, t.Sub(started))
	}
	p.row.Fault = fmt.Sprintf("SIGKILL of the collector %d times, each within 0.3 s of a stored batch; restarted 1 s later", r.cfg.Kills)
	p.row.Ingest = fmt.Sprintf("resumed after %d of %d restarts, a median %s after the collector was started", len(resumed), r.cfg.Kills, median(resumed))
	return r.settle(ctx)
}

// waitFreshBatch waits until a result was stored less than within ago.
func (r *rig) waitFreshBatch(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t, err := r.db.lastReceived(ctx); err == nil && time.Since(t) < within {
			return
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// agentKill kills an agent with SIGKILL the moment its spool's segment is
// written (inotify), AgentKills times.
func (r *rig) agentKill(ctx context.Context, p *phaseRun) error {
	a := r.agents[min(1, len(r.agents)-1)]
	kills, missed := 0, 0
	for kills < r.cfg.AgentKills && missed < 3 {
		_, starts := a.proc.since()
		pid := a.proc.pid()
		wctx, cancel := context.WithTimeout(ctx, 3*r.cfg.Interval+10*time.Second)
		hit, err := waitWrite(wctx, a.spoolDir(), ".seg", func() { syscall.Kill(pid, syscall.SIGKILL) })
		cancel()
		if err != nil {
			return err
		}
		if !hit {
			missed++
			continue
		}
		kills++
		if err := a.proc.waitStarted(ctx, starts); err != nil {
			return err
		}
	}
	p.row.Fault = fmt.Sprintf("SIGKILL of %s %d times, each at its spool's first write of a round (inotify); restarted 1 s later", a.name, kills)
	if missed > 0 {
		p.note("%d times the agent wrote no segment within %s", missed, 3*r.cfg.Interval+10*time.Second)
	}
	p.row.Ingest = "-"
	return r.settle(ctx)
}

// postgresKill kills the postmaster with SIGKILL, PGKills times, each
// time waiting for ingest to resume.
func (r *rig) postgresKill(ctx context.Context, p *phaseRun) error {
	var outcomes []string
	for k := 0; k < r.cfg.PGKills; k++ {
		pid, _, alive := r.db.postmaster()
		if !alive {
			return errors.New("PostgreSQL is not running")
		}
		r.waitFreshBatch(ctx, 300*time.Millisecond)
		syscall.Kill(pid, syscall.SIGKILL)
		outcomes = append(outcomes, r.recoverIngest(ctx, time.Now(), "the kill"))
	}
	p.row.Fault = fmt.Sprintf("SIGKILL of the postmaster %d times, each within 0.3 s of a stored batch", r.cfg.PGKills)
	p.row.Ingest = strings.Join(outcomes, "; ")
	return r.settle(ctx)
}

// postgresStop stops PostgreSQL (pg_ctl stop -m fast) for PGDown and
// starts it again with the options it ran with (pg_ctl restart).
func (r *rig) postgresStop(ctx context.Context, p *phaseRun) error {
	if err := r.pgctl(ctx, "-m", "fast", "-w", "stop"); err != nil {
		return err
	}
	if err := sleep(ctx, r.cfg.PGDown); err != nil {
		return err
	}
	if err := r.pgctl(ctx, "-l", filepath.Join(r.db.dir, "postgres.log"), "-w", "-t", "60", "restart"); err != nil {
		return err
	}
	back := time.Now()
	p.row.Fault = fmt.Sprintf("PostgreSQL stopped (pg_ctl stop -m fast) for %s", r.cfg.PGDown)
	p.row.Ingest = r.recoverIngest(ctx, back, "PostgreSQL came back")
	return r.settle(ctx)
}

// spoolENOSPC shrinks the tmpfs agent's spool file system to what it
// holds plus 16 KiB for Fault.
func (r *rig) spoolENOSPC(ctx context.Context, p *phaseRun) error {
	var a *agent
	for _, x := range r.agents {
		if x.tmpfs {
			a = x
		}
	}
	if err := r.fill(ctx, a.spoolDir(), 16<<10, r.cfg.AgentSpoolDisk); err != nil {
		return err
	}
	p.row.Fault = fmt.Sprintf("%s's spool on a tmpfs cut to what it held plus 16 KiB (ENOSPC) for %s", a.name, r.cfg.Fault)
	p.row.Ingest = "-"
	return r.settle(ctx)
}

// diskFull leaves no free byte on the collector's data file system (its
// PostgreSQL) for Fault.
func (r *rig) diskFull(ctx context.Context, p *phaseRun) error {
	if err := r.fill(ctx, r.data, 0, r.cfg.CollectorDisk); err != nil {
		return err
	}
	p.row.Fault = fmt.Sprintf("the collector's data file system (its PostgreSQL) full for %s", r.cfg.Fault)
	p.row.Ingest = r.recoverIngest(ctx, time.Now(), "space came back")
	return r.settle(ctx)
}

// fill shrinks the tmpfs on dir to its use plus spare for Fault, then
// gives it size again.
func (r *rig) fill(ctx context.Context, dir string, spare, size int64) error {
	const page = 4096
	var err error
	for range 10 {
		var used int64
		if used, err = usedBytes(dir); err != nil {
			return err
		}
		if err = resizeTmpfs(dir, (used+spare+page-1)/page*page); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	serr := sleep(ctx, r.cfg.Fault)
	if err := resizeTmpfs(dir, size); err != nil {
		return err
	}
	return serr
}

// underFlood runs floods in the flood namespace, one process per
// argument list; once every one is in place, it loses every ordinary
// agent in turn (loseAgent), so that each needs a new connection, and a
// new descriptor, from the collector while the floods last, and measures
// ingest until they end.
func (r *rig) underFlood(ctx context.Context, p *phaseRun, argsets ...[]string) (ready, done []FloodLine, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var scanners []*bufio.Scanner
	var stdins []io.Closer
	for _, args := range argsets {
		cmd := r.floodCmd(ctx, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		defer cmd.Wait()
		defer in.Close() // before Wait: an idle flood holds its connections until its stdin ends
		scanners = append(scanners, bufio.NewScanner(out))
		stdins = append(stdins, in)
	}
	next := func(want string) ([]FloodLine, error) {
		var out []FloodLine
		for _, sc := range scanners {
			var l FloodLine
			if !sc.Scan() {
				return nil, fmt.Errorf("a flood ended before its %q line: %v", want, sc.Err())
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Event != want {
				return nil, fmt.Errorf("a flood said %q, want a %q line", sc.Text(), want)
			}
			out = append(out, l)
		}
		return out, nil
	}
	if ready, err = next("ready"); err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	ordinary := r.ordinaryAgents()
	restarted := map[string]time.Time{}
	defer func() {
		for _, a := range ordinary {
			run(context.Background(), "", "ip", "netns", "exec", a.ns, "nft", "delete", "table", "inet", "chaos")
		}
	}()
	// Every restart within the first half of the flood: each agent then
	// has the second half, at least, to upload again.
	step := r.cfg.Fault / time.Duration(2*len(ordinary))
	for _, a := range ordinary {
		if err := sleep(ctx, step); err != nil {
			return nil, nil, err
		}
		if err := r.loseAgent(ctx, a); err != nil {
			return nil, nil, err
		}
		restarted[a.name] = time.Now()
	}
	if done, err = next("done"); err != nil {
		return nil, nil, err
	}
	t1 := time.Now()
	for _, in := range stdins {
		in.Close()
	}
	got, err := r.db.receivedBetween(ctx, t0, t1)
	if err != nil {
		return nil, nil, err
	}
	_, names, err := r.agentLogs()
	if err != nil {
		return nil, nil, err
	}
	reconnected := 0
	for id, name := range names {
		at, ok := restarted[name]
		if !ok {
			continue
		}
		if after, err := r.db.receivedBetween(ctx, at, t1); err == nil && after[id] > 0 {
			reconnected++
		}
	}
	p.row.ClientFlood = true
	p.row.IngestWentOn = sum(got) > 0 && reconnected == len(ordinary)
	verb := "went on"
	switch {
	case sum(got) == 0:
		verb = "stopped"
	case !p.row.IngestWentOn:
		verb = "stopped for agents that reconnected"
	}
	p.row.Ingest = fmt.Sprintf("%s: %d results stored during the flood; %d of %d agents that had to reconnect during it (old connection lost) uploaded again",
		verb, sum(got), reconnected, len(ordinary))
	return ready, done, nil
}

// loseAgentRules drop what an agent sends to the collector's gRPC port to
// end a connection: the collector never learns that the agent's old
// connection is gone, as when a NAT forgets it or the agent's host
// crashes, and keeps its descriptor.
const loseAgentRules = `table inet chaos {
	chain out {
		type filter hook output priority 0;
		ip daddr ` + collectorAddr + ` tcp dport 8443 tcp flags & (fin | rst) != 0 drop
	}
}
`

// loseAgent kills agent a with SIGKILL without the collector learning that
// its connection is gone (loseAgentRules, kept until the phase ends); its
// supervisor starts it again a second later, on a new connection.
func (r *rig) loseAgent(ctx context.Context, a *agent) error {
	if _, err := run(ctx, loseAgentRules, "ip", "netns", "exec", a.ns, "nft", "-f", "-"); err != nil {
		return err
	}
	_, starts := a.proc.since()
	a.proc.kill()
	return a.proc.waitStarted(ctx, starts)
}

// ordinaryAgents are the agents on an ordinary disk.
func (r *rig) ordinaryAgents() []*agent {
	var out []*agent
	for _, a := range r.agents {
		if !a.tmpfs && a.name != "agent-router" {
			out = append(out, a)
		}
	}
	return out
}

// idleConns opens IdleConns idle keep-alive connections from one address
// to the collector's HTTP listener and holds them for Fault: from as many
// processes as the descriptor limit needs.
func (r *rig) idleConns(ctx context.Context, p *phaseRun) error {
	per := int(r.nofile) - 1024
	procs := (r.cfg.IdleConns + per - 1) / per
	var argsets [][]string
	for i := range procs {
		n := r.cfg.IdleConns/procs + boolInt(i < r.cfg.IdleConns%procs)
		argsets = append(argsets, []string{"--mode", "idle", "--target", httpAddr, "--conns", strconv.Itoa(n), "--hold", r.cfg.Fault.String()})
	}
	ready, done, err := r.underFlood(ctx, p, argsets...)
	if err != nil {
		return err
	}
	var i, j IdleReport
	for k := range ready {
		i.Add(*ready[k].Idle)
		j.Add(*done[k].Idle)
	}
	p.row.Fault = fmt.Sprintf("%d idle HTTP keep-alive connections from one address, held %s", r.cfg.IdleConns, r.cfg.Fault)
	p.note("the flood (%d processes of RLIMIT_NOFILE %d) opened %d connections (%d answered) and still held %d at its end (%d closed by the collector)",
		procs, r.nofile, i.Opened, i.Served, j.Open, j.ClosedByServer)
	if len(i.Errors) > 0 {
		p.note("the flood's failures: %s", Summary(i.Errors))
	}
	return r.settle(ctx)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requestFlood sends requests from one address to the collector's web
// page, dataset API and health check for Fault.
func (r *rig) requestFlood(ctx context.Context, p *phaseRun) error {
	paths := "/,/healthz,/api/v1/asns,/asn/64601"
	_, done, err := r.underFlood(ctx, p, []string{"--mode", "requests", "--target", httpAddr, "--concurrency", "64",
		"--duration", r.cfg.Fault.String(), "--paths", paths})
	if err != nil {
		return err
	}
	f := done[0].Flood
	p.row.Fault = fmt.Sprintf("HTTP request flood from one address (64 at a time, %s) for %s", paths, r.cfg.Fault)
	var codes []string
	for c, n := range f.ByStatus {
		codes = append(codes, fmt.Sprintf("%d× %d", n, c))
	}
	sort.Strings(codes)
	p.note("the flood sent %d requests (%.0f/s): %s; %d answered below 400", f.Requests, float64(f.Requests)/max(f.Seconds, 1e-9),
		strings.Join(codes, ", "), f.Served())
	if len(f.Errors) > 0 {
		p.note("the flood's failures: %s", Summary(f.Errors))
	}
	return r.settle(ctx)
}

// quiet stops every agent for Quiet: the refresher ticks with nothing to
// take in.
func (r *rig) quiet(ctx context.Context, p *phaseRun) error {
	r.stopAgents()
	ticks := int(r.cfg.Quiet / r.cfg.RefreshEvery)
	p.row.Fault = fmt.Sprintf("no agent running for %s: %d refresh ticks with nothing new, as many as %s of the default --refresh-every 1m",
		r.cfg.Quiet, ticks, time.Duration(ticks)*time.Minute)
	p.row.Ingest = "-"
	return sleep(ctx, r.cfg.Quiet)
}

// midnight restarts the collector with its clock set to 30 s before the
// next UTC midnight (no agent running), waits three refresh periods past
// midnight, and restarts it with the true clock.
func (r *rig) midnight(ctx context.Context, p *phaseRun) error {
	r.stopAgents()
	const lead = 30 * time.Second
	now := time.Now().UTC()
	offset := now.Truncate(24*time.Hour).Add(24*time.Hour).Sub(now) - lead
	r.coll.setEnv([]string{fmt.Sprintf("%s=%s", clockOffsetVariable, offset)})
	p.row.Fault = fmt.Sprintf("the collector restarted with its clock %s ahead (%s), 30 s before UTC midnight; no agent running",
		offset.Round(time.Second), clockOffsetVariable)
	p.row.Ingest = "-"
	defer func() {
		r.coll.setEnv(nil)
		r.offset.Store(0)
		if err := r.startCollector(ctx); err != nil {
			p.note("restarting the collector with the true clock failed: %v", err)
		}
	}()
	from := fileSize(r.logPath("collector"))
	if err := r.startCollector(ctx); err != nil {
		return err
	}
	if !logHas(r.logPath("collector"), from, "test-only clock offset in force") {
		p.note("this collector ignores %s: no midnight seen", clockOffsetVariable)
		return nil
	}
	r.offset.Store(int64(offset))
	midnight := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	if err := sleep(ctx, midnight.Add(3*r.cfg.RefreshEvery+time.Second).Sub(r.collectorNow())); err != nil {
		return err
	}
	asOf, refreshed, err := r.db.freshness(ctx)
	if err != nil {
		return err
	}
	if asOf.Format(time.DateOnly) == midnight.Format(time.DateOnly) {
		p.note("the rollups rolled to the new UTC day (as_of %s)", asOf.Format(time.DateOnly))
	} else {
		p.note("the rollups did not roll to the new UTC day: as_of %s, 3 refresh periods after midnight", asOf.Format(time.DateOnly))
	}
	if refreshed.Before(midnight.Add(-lead - time.Minute)) {
		p.note("no refresh succeeded on the collector's shifted clock: refreshed_at still dates from before it")
	}
	// The row's age is read on the collector's clock, before the restart.
	p.row.AgeAfter, p.aged = r.ageNow(ctx), true
	return nil
}

// stopAgents stops every agent (SIGTERM: each delivers for up to 10 s).
func (r *rig) stopAgents() {
	for _, a := range r.agents {
		a.proc.stop(20 * time.Second)
	}
}

// drainLimit bounds how long the drain waits for the agents' backlogs
// past Drain: the agents back off up to 5 minutes between deliveries.
const drainLimit = 6 * time.Minute

// drain starts the agents that are stopped, lets every agent run for
// Drain and until none has a backlog (drainLimit at most), then stops
// them all.
func (r *rig) drain(ctx context.Context, p *phaseRun) error {
	for _, a := range r.agents {
		if a.proc.pid() == 0 {
			if err := a.proc.start(); err != nil {
				return err
			}
		}
	}
	if err := sleep(ctx, r.cfg.Drain); err != nil {
		return err
	}
	deadline := time.Now().Add(drainLimit)
	for {
		behind, err := r.backlogged()
		if err != nil {
			return err
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			p.note("after %s, %s still had results of earlier rounds spooled", time.Since(p.start).Round(time.Second), strings.Join(behind, ", "))
			break
		}
		if err := sleep(ctx, 5*time.Second); err != nil {
			return err
		}
	}
	r.stopAgents()
	p.row.Fault = fmt.Sprintf("none: every agent runs (%s, until no agent has a backlog), then stops (SIGTERM, up to 10 s to deliver)",
		time.Since(p.start).Round(time.Second))
	p.row.Ingest = "-"
	return nil
}

// backlogged names the agents whose last round left more results spooled
// than it produced.
func (r *rig) backlogged() ([]string, error) {
	var out []string
	for _, a := range r.agents {
		lines, err := readLog(r.logPath(a.name))
		if err != nil {
			return nil, err
		}
		for i := len(lines) - 1; i >= 0; i-- {
			if lines[i].Msg != "round done" {
				continue
			}
			pending, err1 := strconv.Atoi(lines[i].Attrs["pending"])
			results, err2 := strconv.Atoi(lines[i].Attrs["results"])
			if err1 == nil && err2 == nil && pending > results {
				out = append(out, a.name)
			}
			break
		}
	}
	return out, nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(100 * time.Millisecond)
}
