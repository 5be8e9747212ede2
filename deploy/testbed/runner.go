// Package testbed is the emulated-ISP testbed: it builds an Internet in
// network namespaces (a transit core, our reference MTAs, and one ISP
// router with its customers per scenario, each router with its own
// nftables policy, middleboxes and, where the scenario says, an impaired
// link to transit), runs the real op25b-agent behind every ISP against the
// real op25b-refmta, and checks every (scenario, reference MTA, port,
// family) verdict against the expectations the scenarios declare
// (Scenarios).
//
// It proves the measurement end to end: each OP25B policy seen in the wild
// (silent drop, reset, ICMP, redirect to the ISP's relay, STARTTLS
// stripping, TLS interception, IPv4-only blocking, no SMTP at all, no
// connectivity) must come out as the verdict docs/methodology.md gives it,
// and loss, latency, a carrier-grade NAT, our own refusals and a fault
// near a reference MTA must not produce a false one. Validity runs the
// latter many times and counts (docs/testbed.md).
//
// Running needs root, iproute2, nftables and TUN devices. Everything the testbed creates
// is named with Prefix and a per-run id and removed at the end, on
// SIGINT/SIGTERM too; what a killed run leaves behind, the next run (or
// Sweep) removes.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/deploy/testbed/impair"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// The binaries a run needs in Config.BinDir.
const (
	RefMTABin  = "op25b-refmta"
	AgentBin   = "op25b-agent"
	TestbedBin = "op25b-testbed" // runs the middleboxes, the impaired links and the hog
)

// Config is one testbed run.
type Config struct {
	// BinDir holds RefMTABin, AgentBin and TestbedBin.
	BinDir string
	// Scenarios to run by name; all when empty.
	Scenarios []string
	// Timeout of each probe, passed to the agent (--timeout) in every
	// scenario that is not noisy (Scenario.Noisy).
	Timeout time.Duration
	Log     *slog.Logger
	// Pipeline, if set, keeps the network running after the checks with
	// the collector and agent daemons (see Pipeline).
	Pipeline *Pipeline
}

// Time limits of the set-up; generous, as they only matter when broken.
const (
	startTimeout = 15 * time.Second
	cleanupLimit = 30 * time.Second
)

// agentDeadline bounds one agent run with probe timeout timeout (zero: the
// agent's default): the documented worst case of a round with that
// timeout, plus room for the agent's set-up. It only stops an agent that
// hangs.
func agentDeadline(timeout time.Duration) time.Duration {
	return probe.Config{Timeout: timeout}.RoundBound() + 30*time.Second
}

// Run runs the testbed and returns its report, which is never nil: when
// the run could not be completed (no root, a binary missing, the reference
// MTA failing to start, an interrupt) the error says why and is also in
// Report.Error. Report.Passed tells whether every row passed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep := &Report{StartedAt: time.Now(), ProbeTimeout: cfg.Timeout.String()}
	err := runTestbed(ctx, cfg, rep)
	rep.DurationMS = time.Since(rep.StartedAt).Milliseconds()
	if err != nil {
		rep.Error = err.Error()
	}
	rep.Passed = err == nil && len(rep.Scenarios) > 0
	for i := range rep.Scenarios {
		rep.Passed = rep.Passed && rep.Scenarios[i].Passed
	}
	if rep.Passed {
		rep.RefMTALog = ""
	}
	return rep, err
}

// Preflight checks what a run needs before anything is created, so that a
// missing piece is named plainly instead of surfacing as an `ip` failure.
func Preflight(binDir string) error {
	if os.Geteuid() != 0 {
		return errors.New("testbed: needs root (it creates network namespaces and nftables rules); run it with sudo")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "nft": "nftables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("testbed: %s not found in PATH: install %s", tool, pkg)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("testbed: impaired links need TUN devices: %w", err)
	}
	for _, b := range []string{RefMTABin, AgentBin, TestbedBin} {
		p := filepath.Join(binDir, b)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("testbed: binary %s: %w (build it into --bin)", b, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("testbed: %s is not an executable file", p)
		}
	}
	return nil
}

// prepare checks what a run needs, sweeps what dead runs left, and lays
// out a bed for scenarios with hosts agent namespaces each.
func prepare(ctx context.Context, binDir string, scenarios []Scenario, hosts int, log *slog.Logger) (*bed, error) {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return nil, fmt.Errorf("testbed: --bin: %w", err)
	}
	if err := Preflight(binDir); err != nil {
		return nil, err
	}
	if removed, err := Sweep(ctx, log); err != nil {
		return nil, fmt.Errorf("testbed: sweep: %w", err)
	} else if len(removed) > 0 {
		log.Info("swept stale namespaces", "count", len(removed))
	}
	return newBed(binDir, scenarios, hosts, log)
}

func runTestbed(ctx context.Context, cfg Config, rep *Report) (err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		return errors.New("testbed: probe timeout must be positive")
	}
	scenarios, err := Select(cfg.Scenarios)
	if err != nil {
		return err
	}
	b, err := prepare(ctx, cfg.BinDir, scenarios, 1, log)
	if err != nil {
		return err
	}
	rep.RunID = b.id
	defer func() {
		err = errors.Join(err, b.close(ctx))
		rep.RefMTALog = b.refmtaLogs()
		for i := range rep.Scenarios {
			rep.Scenarios[i].Link = b.linkReports[rep.Scenarios[i].Name]
		}
	}()
	setupStart := time.Now()
	if err := b.setUp(ctx); err != nil {
		return err
	}
	rep.SetupMS = time.Since(setupStart).Milliseconds()
	b.log.Info("testbed up", "setup", time.Since(setupStart).Round(time.Millisecond))

	rep.Scenarios = make([]ScenarioReport, len(b.topo.sites))
	var wg sync.WaitGroup
	for i, s := range b.topo.sites {
		wg.Go(func() {
			timeout := cfg.Timeout
			if s.scenario.Noisy() {
				timeout = 0
			}
			sr := scenarioReport(s.scenario, b.round(ctx, s, 0, timeout))
			if !sr.Passed {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
				sr.Ruleset = routerRuleset(rctx, s)
				cancel()
				sr.MiddleboxLogs = b.middleboxLogs(s.scenario.Name)
			}
			b.log.Info("scenario done", "scenario", s.scenario.Name, "passed", sr.Passed)
			rep.Scenarios[i] = sr
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("testbed: interrupted: %w", context.Cause(ctx))
	}
	if err := b.checkChildren(); err != nil {
		return err
	}
	if cfg.Pipeline != nil {
		rep.Passed = true // as far as the checks go; Run has the last word
		for _, sr := range rep.Scenarios {
			rep.Passed = rep.Passed && sr.Passed
		}
		if err := rep.WriteTable(cfg.Pipeline.Summary); err != nil {
			return err
		}
		return runPipeline(ctx, cfg, b)
	}
	return nil
}

// bed is one testbed, set up or being set up: the run's lock and state
// directory, its namespaces and its processes.
type bed struct {
	id       string
	binDir   string
	stateDir string
	lock     *runLock
	topo     *topology
	log      *slog.Logger

	mu       sync.Mutex
	children []*child
	refmtas  map[RefMTA]*child
	mboxes   map[string][]*child // by scenario
	links    map[string]string   // the counters file of each impaired link, by scenario
	// linkReports is what each impaired link did, read by close once the
	// links have stopped.
	linkReports map[string]*LinkReport
}

// newBed takes a fresh run id and its lock and lays out the topology; the
// caller must close it.
func newBed(binDir string, scenarios []Scenario, hosts int, log *slog.Logger) (*bed, error) {
	lock, id, err := newRun()
	if err != nil {
		return nil, err
	}
	b := &bed{id: id, binDir: binDir, lock: lock, log: log.With("run", id),
		refmtas: map[RefMTA]*child{}, mboxes: map[string][]*child{}, links: map[string]string{}}
	if b.stateDir, err = makeStateDir(id); err != nil {
		lock.release()
		return nil, err
	}
	if b.topo, err = newTopology(id, scenarios, hosts, b.log); err != nil {
		os.RemoveAll(b.stateDir)
		lock.release()
		return nil, err
	}
	return b, nil
}

// close stops every process (the collector last), keeps what the impaired
// links counted, and removes the namespaces, the state and the lock. It
// runs on a context of its own: when ctx is cancelled by a signal, that is
// exactly when clean-up must still happen.
func (b *bed) close(ctx context.Context) error {
	b.log.Info("cleaning up")
	b.mu.Lock()
	children := slices.Clone(b.children)
	b.mu.Unlock()
	stopChildren(children)
	b.linkReports = make(map[string]*LinkReport)
	for name, path := range b.links {
		if st, err := impair.ReadReport(path); err == nil {
			b.linkReports[name] = &LinkReport{Down: st.Forward, Up: st.Reverse}
		} else {
			b.log.Warn("impaired link counters", "scenario", name, "err", err)
		}
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupLimit)
	defer cancel()
	var err error
	if terr := b.topo.teardown(tctx); terr != nil {
		b.log.Error("teardown", "err", terr)
		err = fmt.Errorf("testbed: teardown: %w", terr)
	}
	os.RemoveAll(b.stateDir)
	b.lock.release()
	return err
}

// start starts a long-running process of the bed, stopped by close.
func (b *bed) start(name string, argv ...string) (*child, error) {
	c, err := startChild(name, b.log, argv...)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.children = append(b.children, c)
	b.mu.Unlock()
	return c, nil
}

// checkChildren reports a process that should be running and is not.
func (b *bed) checkChildren() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.children {
		if c.exited() && !c.stopped.Load() {
			return fmt.Errorf("testbed: %s exited during the run (%v): %s", c.name, c.err, c.out.String())
		}
	}
	return nil
}

// setUp builds the topology (with its impaired links) and starts the
// reference MTAs, the hog and the middleboxes.
func (b *bed) setUp(ctx context.Context) error {
	b.log.Info("building topology", "scenarios", len(b.topo.sites), "namespaces", len(b.topo.namespaces()))
	if err := b.topo.build(ctx, b.startLink); err != nil {
		return fmt.Errorf("testbed: topology: %w", err)
	}
	var waits []func() error
	for _, m := range b.refmtaSet() {
		c, err := b.start(RefMTABin+" "+string(m), b.refmtaArgv(m)...)
		if err != nil {
			return err
		}
		b.refmtas[m] = c
		waits = append(waits, func() error {
			return c.waitFor(ctx, startTimeout, "writing identity.json", identityReady(b.identity(m)))
		})
	}
	for _, s := range b.topo.sites {
		for _, mb := range s.scenario.Middleboxes {
			ready := filepath.Join(b.stateDir, fmt.Sprintf("middlebox-%s-%d.ready", s.scenario.Name, mb.Port))
			argv := []string{"ip", "netns", "exec", s.isp, filepath.Join(b.binDir, TestbedBin), "middlebox",
				"--mode", mb.Mode, "--port", strconv.Itoa(int(mb.Port)), "--ready", ready, "--log-level", "debug"}
			if mb.Hostname != "" {
				argv = append(argv, "--hostname", mb.Hostname)
			}
			c, err := b.start(fmt.Sprintf("middlebox %s/%s", s.scenario.Name, mb.Mode), argv...)
			if err != nil {
				return err
			}
			b.mboxes[s.scenario.Name] = append(b.mboxes[s.scenario.Name], c)
			waits = append(waits, func() error { return c.waitFor(ctx, startTimeout, "listening", fileExists(ready)) })
		}
	}
	for _, w := range waits {
		if err := w(); err != nil {
			return err
		}
	}
	if b.topo.busy {
		return b.startHog(ctx)
	}
	return nil
}

// refmtaSet lists the reference MTAs the scenarios of the bed probe, the
// main one always (the pipeline's collector lives beside it).
func (b *bed) refmtaSet() []RefMTA {
	out := []RefMTA{MainMTA}
	if b.topo.upFar != "" {
		out = append(out, FarMTA)
	}
	if b.topo.busy {
		out = append(out, BusyMTA)
	}
	return out
}

// refmtaDir is reference MTA m's state directory: its key and identity.
func (b *bed) refmtaDir(m RefMTA) string { return filepath.Join(b.stateDir, "refmta-"+string(m)) }

// identity is the path of reference MTA m's identity document.
func (b *bed) identity(m RefMTA) string { return filepath.Join(b.refmtaDir(m), "identity.json") }

// refmtaArgv is the command line of reference MTA m, in its namespace.
func (b *bed) refmtaArgv(m RefMTA, extra ...string) []string {
	v4, v6 := m.Addrs()
	argv := []string{"ip", "netns", "exec", b.topo.mtaNamespace(m), filepath.Join(b.binDir, RefMTABin),
		"--listen", v4.String(), "--listen", v6.String(), "--state-dir", b.refmtaDir(m),
		"--hostname", "refmta-" + string(m) + ".testbed.invalid"}
	if m == BusyMTA {
		// The hog's sessions must outlive any run: a slot it gave back
		// would let a probe through.
		argv = append(argv, "--max-sessions", strconv.Itoa(busySessions), "--idle-timeout", "24h", "--session-timeout", "24h")
	}
	return append(argv, extra...)
}

// startHog starts the process that holds every session slot of the busy
// reference MTA, and waits until it does and has seen a session refused.
func (b *bed) startHog(ctx context.Context) error {
	ready := filepath.Join(b.stateDir, "hog.ready")
	var sources []string
	for _, a := range hogSources() {
		sources = append(sources, a.String())
	}
	c, err := b.start("hog", "ip", "netns", "exec", b.topo.mta, filepath.Join(b.binDir, TestbedBin), "hog",
		"--addr", netip.AddrPortFrom(BusyMTAv4, 25).String(), "--source", strings.Join(sources, ","), "--ready", ready)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, startTimeout, "holding every session of the busy reference MTA", fileExists(ready))
}

// startLink starts the impaired uplink of site s (a linkStarter): the
// impair process in transit, which makes the TUN devices.
func (b *bed) startLink(ctx context.Context, s site) error {
	name := s.scenario.Name
	stats := filepath.Join(b.stateDir, "link-"+name+".json")
	ready := filepath.Join(b.stateDir, "link-"+name+".ready")
	sh := s.scenario.Link
	c, err := b.start("impair "+name, "ip", "netns", "exec", b.topo.transit, filepath.Join(b.binDir, TestbedBin), "impair",
		"--dev", s.transitIf(), "--peer-netns", s.isp, "--peer-dev", uplinkIf,
		"--delay", sh.Delay.String(), "--jitter", sh.Jitter.String(), "--loss", strconv.FormatFloat(sh.Loss, 'g', -1, 64),
		"--seed", strconv.FormatUint(seedOf(name), 10), "--stats", stats, "--ready", ready)
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, startTimeout, "making its TUN devices", fileExists(ready)); err != nil {
		return err
	}
	b.mu.Lock()
	b.links[name] = stats
	b.mu.Unlock()
	return nil
}

// seedOf derives a link's seed from its scenario's name, so that runs
// draw alike.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func (b *bed) refmtaLogs() string {
	var sb strings.Builder
	for _, m := range RefMTAs {
		if c := b.refmtas[m]; c != nil {
			fmt.Fprintf(&sb, "== %s\n%s", c.name, c.out.String())
		}
	}
	return sb.String()
}

func (b *bed) middleboxLogs(scenario string) string {
	var sb strings.Builder
	for _, c := range b.mboxes[scenario] {
		sb.WriteString("== " + c.name + "\n" + c.out.String())
	}
	return sb.String()
}

// stopChildren stops every child at once, except those with a grace
// period (the collector, which stops its PostgreSQL), which stop after
// all the others: agents must not lose their collector first.
func stopChildren(children []*child) {
	var wg sync.WaitGroup
	var last []*child
	for _, c := range children {
		if c.grace > 0 {
			last = append(last, c)
			continue
		}
		wg.Go(c.stop)
	}
	wg.Wait()
	for _, c := range last {
		c.stop()
	}
}

// newRun picks a run id that no live run holds and takes its lock.
func newRun() (*runLock, string, error) {
	for range 16 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		lock, err := lockRun(id)
		if errors.Is(err, errRunAlive) {
			continue
		}
		return lock, id, err
	}
	return nil, "", errors.New("testbed: no free run id")
}

// agentRun is one agent process of a round.
type agentRun struct {
	ms     int64
	exit   int
	err    string // why the run gave no usable report
	stderr string
	report *op25bv1.ProbeReport
}

// round runs one round of scenario s: its agents, all at once, in host
// namespace host of the site, each probing the reference MTAs the scenario
// expects, with probe timeout timeout (zero: the agent's default).
func (b *bed) round(ctx context.Context, s site, host int, timeout time.Duration) []agentRun {
	argv := []string{"ip", "netns", "exec", s.hosts[host], b.agentBin(), "check",
		"--format", "json", "--quiet"}
	for _, m := range s.scenario.Expect.RefMTAs() {
		argv = append(argv, "--refmta", b.identity(m))
	}
	if timeout > 0 {
		argv = append(argv, "--timeout", timeout.String())
	}
	runs := make([]agentRun, s.scenario.agents())
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { runs[i] = runAgent(ctx, argv, agentDeadline(timeout)) })
	}
	wg.Wait()
	return runs
}

// runAgent runs one `op25b-agent check` and parses its report.
func runAgent(ctx context.Context, argv []string, deadline time.Duration) agentRun {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout strings.Builder
	stderr := newTail(32 << 10)
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = stopGrace

	start := time.Now()
	err := cmd.Run()
	r := agentRun{ms: time.Since(start).Milliseconds(), exit: exitCode(err)}
	switch {
	case ctx.Err() != nil:
		r.err = fmt.Sprintf("agent killed after %s: %v", time.Since(start).Round(time.Millisecond), ctx.Err())
	default:
		pr := new(op25bv1.ProbeReport)
		if perr := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(stdout.String()), pr); perr != nil {
			r.err = fmt.Sprintf("agent output is not a ProbeReport (exit %d, %v): %v: %q",
				r.exit, err, perr, clip(stdout.String(), 200))
		} else {
			r.report = pr
		}
		// The agent exits 0 whenever the round ran, whatever it found, so
		// any other status is a failed run even with a report on stdout.
		if err != nil && r.err == "" {
			r.err = fmt.Sprintf("agent failed: %v", err)
		}
	}
	r.stderr = stderr.String()
	return r
}

// routerRuleset returns the router's live ruleset with its counters, which
// show which rule the failing probes met.
func routerRuleset(ctx context.Context, s site) string {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", s.isp, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

func fileExists(path string) func() bool {
	return func() bool {
		_, err := os.Stat(path)
		return err == nil
	}
}

// identityReady reports whether the reference MTA's identity document is
// complete: it is written after the listeners are bound, and parsing it
// (rather than seeing the file) guards against reading it half-written.
func identityReady(path string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		var id op25bv1.ReferenceMTA
		return protojson.Unmarshal(b, &id) == nil && len(id.GetAddresses()) > 0
	}
}
