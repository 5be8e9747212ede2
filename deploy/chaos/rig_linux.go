package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/collector/pgcluster"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// nsPrefix starts the name of every network namespace of a run:
// "o25chaos-<run id>-<role>"; lockDir holds each live run's lock.
const (
	nsPrefix = "o25chaos-"
	lockDir  = "/run/op25b-chaos"
)

// The address plan. The collector and both reference MTAs live in the
// core namespace, on its loopback interface; agent i (from 1) and the flood
// each have a namespace of their own behind a veth pair to the core:
// core 10.25.i.1 and fd25:0:i::1, the client 10.25.i.2 and fd25:0:i::2.
// Each agent is its own /24 and /48, its own ASN in the run's ip2asn
// table; the two reference MTAs are two networks of their own.
const (
	collectorAddr = "10.25.0.1"
	grpcAddr      = collectorAddr + ":8443"
	httpAddr      = collectorAddr + ":9090"
	floodIndex    = 250
)

var refmtaAddrs = [][2]string{{"10.25.0.25", "fd25::25"}, {"10.26.0.25", "fd26::25"}}

// The binaries a run needs in Config.BinDir.
const (
	collectorBin = "op25b-collector"
	refmtaBin    = "op25b-refmta"
	agentBin     = "op25b-agent"
)

// agent is one agent daemon of the run.
type agent struct {
	name  string
	index int
	ns    string
	state string
	proc  *proc
	// tmpfs: the spool is a tmpfs of its own (the ENOSPC phase).
	tmpfs bool
}

func (a *agent) spoolDir() string { return filepath.Join(a.state, "spool") }

// rig is a running network of the chaos run.
type rig struct {
	cfg     Config
	id      string
	dir     string
	core    string
	floodNS string
	nss     []string
	lock    *os.File
	coll    *proc
	data    string // the collector's data directory, a tmpfs
	db      database
	refmtas []*proc
	agents  []*agent
	pgBin   string
	// nofile is the harness's RLIMIT_NOFILE, which the floods inherit.
	nofile uint64
	// offset is the collector's injected clock (OP25B_TEST_ONLY_CLOCK_OFFSET).
	offset atomic.Int64

	mu      sync.Mutex
	samples []sample
}

// sample is one reading of the rollups' freshness.
type sample struct {
	at  time.Time
	age time.Duration // on the collector's clock
}

func (r *rig) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%s chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (r *rig) logPath(name string) string { return filepath.Join(r.dir, "logs", name+".log") }

// collectorNow is the collector's clock.
func (r *rig) collectorNow() time.Time { return time.Now().Add(time.Duration(r.offset.Load())) }

// Sweep removes what runs killed before their teardown left behind: their
// namespaces and whatever still runs in them, and the mounts of their work
// directories. Runs whose lock is held are left alone.
func Sweep(ctx context.Context) error {
	var errs []error
	seen := map[string]bool{}
	for _, ns := range listNamespaces(nsPrefix) {
		id, _, _ := strings.Cut(strings.TrimPrefix(ns, nsPrefix), "-")
		if !seen[id] {
			seen[id] = true
			f, err := lockRun(id)
			if err != nil {
				continue // alive
			}
			defer func() { f.Close(); os.Remove(f.Name()) }()
		}
		if err := removeNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	ents, _ := os.ReadDir(lockDir)
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".dir")
		if !ok {
			continue
		}
		f, err := lockRun(id)
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(lockDir, e.Name())); err == nil {
			for _, m := range mountsUnder(strings.TrimSpace(string(b))) {
				if err := unmount(m); err != nil {
					errs = append(errs, fmt.Errorf("chaos: unmount %s: %w", m, err))
				}
			}
		}
		os.Remove(filepath.Join(lockDir, e.Name()))
		f.Close()
		os.Remove(f.Name())
	}
	return errors.Join(errs...)
}

// Run runs the chaos run of cfg and returns its report. It needs root
// (namespaces, tmpfs mounts, other processes' limits).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("chaos: needs root (network namespaces, tmpfs mounts, resource limits)")
	}
	if err := CheckPhases(cfg.Phases); err != nil {
		return nil, err
	}
	for _, b := range []string{collectorBin, refmtaBin, agentBin} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("chaos: %w (run make build)", err)
		}
	}
	if cfg.Self == "" {
		return nil, errors.New("chaos: Config.Self (the op25b-chaos binary) is required for the floods")
	}
	pgBin, err := pgcluster.FindBinDir()
	if err != nil {
		return nil, err
	}
	// The flood holds IdleConns sockets, in as many processes as the
	// descriptor limit that they inherit requires.
	nofile, err := RaiseNofile(uint64(cfg.IdleConns) + 1024)
	if err != nil {
		return nil, fmt.Errorf("chaos: raise RLIMIT_NOFILE: %w", err)
	}
	if nofile < 2048 {
		return nil, fmt.Errorf("chaos: RLIMIT_NOFILE is %d; the idle-connection flood needs thousands", nofile)
	}
	if err := Sweep(ctx); err != nil {
		fmt.Fprintf(cfg.Progress, "chaos: sweeping an earlier run: %v\n", err)
	}
	var idb [3]byte
	rand.Read(idb[:])
	r := &rig{cfg: cfg, id: hex.EncodeToString(idb[:]), pgBin: pgBin, nofile: nofile}
	if r.lock, err = lockRun(r.id); err != nil {
		return nil, err
	}
	r.dir = cfg.WorkDir
	if r.dir == "" {
		r.dir = filepath.Join("/var/tmp", "op25b-chaos."+r.id)
	}
	if r.dir, err = filepath.Abs(r.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// PostgreSQL runs as an unprivileged user: it must reach its directory.
	os.Chmod(r.dir, 0o755)
	if err := os.WriteFile(filepath.Join(lockDir, r.id+".dir"), []byte(r.dir), 0o644); err != nil {
		return nil, err
	}
	defer r.teardown()
	rep := &Report{Started: time.Now(), WorkDir: r.dir}
	r.progress("run %s in %s (logs in %s)", r.id, r.dir, filepath.Join(r.dir, "logs"))
	if err := r.build(ctx); err != nil {
		return nil, err
	}
	if err := r.startAll(ctx); err != nil {
		return nil, err
	}
	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go r.sample(sctx)
	rows, err := r.phases(ctx)
	if err != nil {
		return nil, err
	}
	stopSampling()
	if err := r.finish(ctx, rep, rows); err != nil {
		return nil, err
	}
	rep.Ended = time.Now()
	return rep, nil
}

// build makes the namespaces, the mounts, the ip2asn table and the
// reference MTAs' identities.
func (r *rig) build(ctx context.Context) error {
	r.core = nsPrefix + r.id + "-core"
	if err := addNamespace(ctx, r.core); err != nil {
		return err
	}
	r.nss = append(r.nss, r.core)
	svc := []string{"addr add " + collectorAddr + "/32 dev lo"}
	for _, a := range refmtaAddrs {
		svc = append(svc, "addr add "+a[0]+"/32 dev lo", "addr add "+a[1]+"/128 dev lo")
	}
	if _, err := run(ctx, strings.Join(svc, "\n")+"\n", "ip", "-n", r.core, "-batch", "-"); err != nil {
		return err
	}
	n := r.cfg.Agents + 2
	var asn strings.Builder
	fmt.Fprintf(&asn, "10.25.0.0\t10.25.0.255\t64500\tZZ\tCHAOS-REFMTA-A\nfd25::\tfd25:0:0:ffff:ffff:ffff:ffff:ffff\t64500\tZZ\tCHAOS-REFMTA-A\n")
	fmt.Fprintf(&asn, "10.26.0.0\t10.26.0.255\t64501\tZZ\tCHAOS-REFMTA-B\nfd26::\tfd26:0:0:ffff:ffff:ffff:ffff:ffff\t64501\tZZ\tCHAOS-REFMTA-B\n")
	for i := 1; i <= n; i++ {
		a := &agent{index: i}
		switch i {
		case n - 1:
			a.name, a.tmpfs = "agent-tmpfs", true
		case n:
			a.name = "agent-router"
		default:
			a.name = fmt.Sprintf("agent-%d", i)
		}
		a.ns = nsPrefix + r.id + "-" + a.name
		a.state = filepath.Join(r.dir, a.name)
		if err := r.addClient(ctx, a.ns, i); err != nil {
			return err
		}
		r.agents = append(r.agents, a)
		fmt.Fprintf(&asn, "10.25.%d.0\t10.25.%d.255\t%d\tZZ\tCHAOS-%s\nfd25:0:%x::\tfd25:0:%x:ffff:ffff:ffff:ffff:ffff\t%d\tZZ\tCHAOS-%s\n",
			i, i, 64600+i, strings.ToUpper(a.name), i, i, 64600+i, strings.ToUpper(a.name))
	}
	r.floodNS = nsPrefix + r.id + "-flood"
	if err := r.addClient(ctx, r.floodNS, floodIndex); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.dir, "chaos.ip2asn"), []byte(asn.String()), 0o644); err != nil {
		return err
	}
	r.data = filepath.Join(r.dir, "collector")
	if err := mountTmpfs(r.data, r.cfg.CollectorDisk); err != nil {
		return err
	}
	r.db = database{dir: filepath.Join(r.data, "postgres")}
	for _, a := range r.agents {
		if a.tmpfs {
			if err := mountTmpfs(a.spoolDir(), r.cfg.AgentSpoolDisk); err != nil {
				return err
			}
		}
	}
	for i, addrs := range refmtaAddrs {
		name := refmtaName(i)
		out, err := run(ctx, "", filepath.Join(r.cfg.BinDir, refmtaBin), "identity", "--state-dir", filepath.Join(r.dir, name),
			"--listen", addrs[0], "--listen", addrs[1], "--hostname", name+".chaos.invalid", "--log-level", "error")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.dir, name+".json"), []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func refmtaName(i int) string { return "refmta-" + string(rune('a'+i)) }

// addNamespace creates ns with its loopback up and DAD off (no wait for
// IPv6 addresses).
func addNamespace(ctx context.Context, ns string) error {
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	_, err := run(ctx, "", "ip", "netns", "exec", ns, "sh", "-c",
		"ip link set lo up && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad")
	return err
}

// addClient makes namespace ns, client i of the address plan.
func (r *rig) addClient(ctx context.Context, ns string, i int) error {
	if err := addNamespace(ctx, ns); err != nil {
		return err
	}
	r.nss = append(r.nss, ns)
	dev := fmt.Sprintf("c%d", i)
	v4, v6 := fmt.Sprintf("10.25.%d.", i), fmt.Sprintf("fd25:0:%x::", i)
	core := []string{
		"link add " + dev + " type veth peer name eth0 netns " + ns,
		"addr add " + v4 + "1/24 dev " + dev, "addr add " + v6 + "1/64 dev " + dev, "link set " + dev + " up",
	}
	if _, err := run(ctx, strings.Join(core, "\n")+"\n", "ip", "-n", r.core, "-batch", "-"); err != nil {
		return err
	}
	client := []string{
		"addr add " + v4 + "2/24 dev eth0", "addr add " + v6 + "2/64 dev eth0", "link set eth0 up",
		"route add default via " + v4 + "1", "route add ::/0 via " + v6 + "1",
	}
	_, err := run(ctx, strings.Join(client, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	return err
}

// startAll starts the collector, enrolls and starts the reference MTAs
// and the agents, and waits until every agent's results are stored.
func (r *rig) startAll(ctx context.Context) error {
	argv := []string{"ip", "netns", "exec", r.core, filepath.Join(r.cfg.BinDir, collectorBin),
		"--data-dir", r.data, "--listen", grpcAddr, "--http-listen", httpAddr, "--tls-hosts", collectorAddr,
		"--asn", filepath.Join(r.dir, "chaos.ip2asn"),
		"--interval", r.cfg.Interval.String(), "--jitter", r.cfg.Interval.String(), "--probe-timeout", "2s",
		"--refresh-every", r.cfg.RefreshEvery.String(), "--windows-every", r.cfg.RefreshEvery.String(), "--class-min-prefixes", "1", "--log-level", "info"}
	for i := range refmtaAddrs {
		argv = append(argv, "--refmta", filepath.Join(r.dir, refmtaName(i)+".json"))
	}
	r.coll = newProc("collector", r.logPath("collector"), argv)
	r.coll.nofile = r.cfg.CollectorNofile
	r.progress("starting the collector (embedded PostgreSQL on a %d MiB tmpfs, RLIMIT_NOFILE %d)", r.cfg.CollectorDisk>>20, r.cfg.CollectorNofile)
	if err := r.startCollector(ctx); err != nil {
		return err
	}
	token := func(kind string, uses int) (string, error) {
		out, err := run(ctx, "", "ip", "netns", "exec", r.core, filepath.Join(r.cfg.BinDir, collectorBin), "token", "create",
			"--data-dir", r.data, "--kind", kind, "--uses", strconv.Itoa(uses), "--label", "chaos "+kind, "--log-level", "error")
		return strings.TrimSpace(out), err
	}
	rtok, err := token("refmta", len(refmtaAddrs))
	if err != nil {
		return err
	}
	atok, err := token("agent", len(r.agents))
	if err != nil {
		return err
	}
	ca := filepath.Join(r.data, "tls", "ca.pem")
	for i, addrs := range refmtaAddrs {
		name := refmtaName(i)
		p := newProc(name, r.logPath(name), []string{"ip", "netns", "exec", r.core, filepath.Join(r.cfg.BinDir, refmtaBin),
			"--listen", addrs[0], "--listen", addrs[1], "--state-dir", filepath.Join(r.dir, name), "--hostname", name + ".chaos.invalid",
			"--collector", grpcAddr, "--collector-ca", ca, "--enroll", rtok, "--log-level", "warn"})
		if err := p.start(); err != nil {
			return err
		}
		r.refmtas = append(r.refmtas, p)
	}
	for _, a := range r.agents {
		argv := []string{"ip", "netns", "exec", a.ns, filepath.Join(r.cfg.BinDir, agentBin), "run",
			"--collector", grpcAddr, "--collector-ca", ca, "--enroll", atok, "--state-dir", a.state, "--label", a.name, "--log-level", "info"}
		if a.name == "agent-router" {
			// What the volunteer guide recommends for a home router.
			argv = append(argv, "--spool-max-bytes", "1048576")
		}
		a.proc = newProc(a.name, r.logPath(a.name), argv)
		if err := a.proc.start(); err != nil {
			return err
		}
	}
	r.progress("%d agents and %d reference MTAs started; waiting for every agent's first results", len(r.agents), len(r.refmtas))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := r.db.receivedBetween(ctx, time.Time{}, time.Now().Add(time.Hour))
		if err == nil && len(got) >= len(r.agents) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: only %d of %d agents stored results after 2 minutes (%v); see %s", len(got), len(r.agents), err,
				filepath.Join(r.dir, "logs"))
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// startCollector starts (or restarts) the collector and waits until it
// serves.
func (r *rig) startCollector(ctx context.Context) error {
	from := fileSize(r.logPath("collector"))
	if _, starts := r.coll.since(); starts == 0 {
		if err := r.coll.start(); err != nil {
			return err
		}
	} else if err := r.coll.restart(30 * time.Second); err != nil {
		return err
	}
	return r.waitCollector(ctx, from)
}

// waitCollector waits until the collector's log, past offset from, says
// it is ready.
func (r *rig) waitCollector(ctx context.Context, from int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if logHas(r.logPath("collector"), from, `msg="collector ready"`) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: the collector is not ready after 2 minutes; see %s", r.logPath("collector"))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// sample reads the rollups' freshness every half refresh period.
func (r *rig) sample(ctx context.Context) {
	for ctx.Err() == nil {
		if _, refreshed, err := r.db.freshness(ctx); err == nil && !refreshed.IsZero() {
			r.mu.Lock()
			r.samples = append(r.samples, sample{at: time.Now(), age: r.collectorNow().Sub(refreshed)})
			r.mu.Unlock()
		}
		sleep(ctx, r.cfg.RefreshEvery/2)
	}
}

// worstAge is the largest age sampled in [from, to), in refresh periods,
// or -1.
func (r *rig) worstAge(from, to time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	worst := -1.0
	for _, s := range r.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			worst = max(worst, s.age.Seconds()/r.cfg.RefreshEvery.Seconds())
		}
	}
	return worst
}

// ageNow is the rollups' age now in refresh periods, or -1.
func (r *rig) ageNow(ctx context.Context) float64 {
	_, refreshed, err := r.db.freshness(ctx)
	if err != nil || refreshed.IsZero() {
		return -1
	}
	return r.collectorNow().Sub(refreshed).Seconds() / r.cfg.RefreshEvery.Seconds()
}

// waitIngest waits up to limit for a result received after since, and
// returns when it came.
func (r *rig) waitIngest(ctx context.Context, since time.Time, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t, err := r.db.lastReceived(ctx); err == nil && t.After(since) {
			return t, true
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return time.Time{}, false
}

// agentBackoff bounds how long agents may wait between delivery attempts
// after failed ones (their 5-minute backoff), with a margin.
const agentBackoff = 5*time.Minute + 30*time.Second

// recoverIngest waits for ingest to resume after a fault that ended at
// since (event says how it ended) and says how it went. A collector that
// cannot store (its PostgreSQL is gone, or it logs failed inserts) gets
// Recover to come back by itself before the harness restarts it, as an
// operator would. A collector that stores whatever comes may wait for the
// agents, which back off after failed uploads.
func (r *rig) recoverIngest(ctx context.Context, since time.Time, event string) string {
	logFrom := fileSize(r.logPath("collector"))
	round := func(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
	if t, ok := r.waitIngest(ctx, since, r.cfg.Recover); ok {
		return fmt.Sprintf("resumed %s after %s", round(t.Sub(since)), event)
	}
	_, _, alive := r.db.postmaster()
	if alive && countInLog(r.logPath("collector"), logFrom, -1, "storing results failed") == 0 {
		if t, ok := r.waitIngest(ctx, since, agentBackoff); ok {
			return fmt.Sprintf("resumed %s after %s, by itself (the agents back off up to 5 min after failed uploads)", round(t.Sub(since)), event)
		}
		return fmt.Sprintf("did not resume within %s after %s", agentBackoff, event)
	}
	r.progress("ingest did not resume within %s after %s: restarting the collector", r.cfg.Recover, event)
	restarted := time.Now()
	if err := r.startCollector(ctx); err != nil {
		return fmt.Sprintf("did not resume after %s; restarting the collector failed: %v", event, err)
	}
	if t, ok := r.waitIngest(ctx, restarted, agentBackoff); ok {
		return fmt.Sprintf("did not resume within %s after %s; resumed %s after the harness restarted the collector",
			r.cfg.Recover, event, round(t.Sub(restarted)))
	}
	return fmt.Sprintf("did not resume after %s, even %s after the harness restarted the collector", event, agentBackoff)
}

// pgctl runs pg_ctl on the collector's cluster as its owner, in the core
// namespace (PostgreSQL refuses to run as root).
func (r *rig) pgctl(ctx context.Context, args ...string) error {
	var st syscall.Stat_t
	data := filepath.Join(r.db.dir, "data")
	if err := syscall.Stat(data, &st); err != nil {
		return err
	}
	argv := append([]string{"netns", "exec", r.core, "setpriv", "--reuid", strconv.Itoa(int(st.Uid)), "--regid", strconv.Itoa(int(st.Gid)),
		"--clear-groups", filepath.Join(r.pgBin, "pg_ctl"), "-D", data}, args...)
	_, err := run(ctx, "", "ip", argv...)
	return err
}

// teardown stops every process, the PostgreSQL a collector left behind,
// unmounts the tmpfs mounts and deletes the namespaces.
func (r *rig) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, a := range r.agents {
		if a.proc != nil {
			a.proc.stop(5 * time.Second)
		}
	}
	for _, p := range r.refmtas {
		p.stop(5 * time.Second)
	}
	if r.coll != nil {
		r.coll.stop(30 * time.Second)
	}
	if b, err := os.ReadFile(filepath.Join(r.db.dir, "postgres.log")); r.db.dir != "" && err == nil {
		os.WriteFile(r.logPath("postgres"), b, 0o644)
	}
	if pid, _, alive := r.db.postmaster(); alive {
		if err := r.pgctl(ctx, "-m", "immediate", "-w", "stop"); err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, ns := range r.nss {
		if err := removeNamespace(ctx, ns); err != nil {
			r.progress("teardown: %v", err)
		}
	}
	for _, m := range mountsUnder(r.dir) {
		if err := unmount(m); err != nil {
			r.progress("teardown: unmount %s: %v", m, err)
		}
	}
	os.Remove(filepath.Join(lockDir, r.id+".dir"))
	if r.lock != nil {
		r.lock.Close()
		os.Remove(r.lock.Name())
	}
}

// readSpools returns the results still spooled by each (stopped) agent,
// per round.
func (r *rig) readSpools() (map[RoundKey]int, error) {
	out := map[RoundKey]int{}
	for _, a := range r.agents {
		sp, err := spool.Open(a.spoolDir(), spool.Options{MaxBytes: 1 << 40})
		if err != nil {
			return nil, fmt.Errorf("chaos: read the spool of %s: %w", a.name, err)
		}
		for _, rec := range sp.Pending(1 << 30) {
			var pr op25bv1.ProbeResult
			if err := proto.Unmarshal(rec.Payload, &pr); err != nil {
				continue
			}
			out[RoundKey{pr.GetAgentId(), pr.GetRoundId()}]++
		}
		sp.Close()
	}
	return out, nil
}

// agentLogs parses every agent's log.
func (r *rig) agentLogs() ([]AgentLog, map[string]string, error) {
	var logs []AgentLog
	names := map[string]string{}
	for _, a := range r.agents {
		lines, err := readLog(r.logPath(a.name))
		if err != nil {
			return nil, nil, err
		}
		l := ReadAgentLog(lines)
		names[l.ID] = a.name
		logs = append(logs, l)
	}
	return logs, names, nil
}

// readLog parses the log file at path.
func readLog(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseLog(f)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logHas reports whether the file, from offset from, contains s.
func logHas(path string, from int64, s string) bool {
	return countInLog(path, from, -1, s) > 0
}

// countInLog counts the lines of the file between offsets from and to
// (-1: its end) that contain s.
func countInLog(path string, from, to int64, s string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var rd io.Reader = io.NewSectionReader(f, from, 1<<62)
	if to >= 0 {
		rd = io.NewSectionReader(f, from, max(to-from, 0))
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// floodCmd starts the op25b-chaos flood in the flood namespace.
func (r *rig) floodCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.floodNS, r.cfg.Self, "flood"}, args...)...)
	cmd.SysProcAttr = childAttr()
	return cmd
}
