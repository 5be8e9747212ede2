// Package testbed is the emulated-ISP testbed: it builds an Internet in
// network namespaces (a transit core, our reference MTA, and one ISP router
// with one customer per scenario, each router with its own nftables policy
// and middleboxes), runs the real op25b-agent behind every ISP against the
// real op25b-refmta, and checks every (scenario, port, family) verdict
// against the expectations the scenarios declare (Scenarios).
//
// It proves the measurement end to end: each OP25B policy seen in the wild
// (silent drop, reset, ICMP, redirect to the ISP's relay, STARTTLS
// stripping, TLS interception, IPv4-only blocking, no SMTP at all, no
// connectivity) must come out as the verdict docs/methodology.md gives it.
//
// Running needs root, iproute2 and nftables. Everything the testbed creates
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
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// The binaries a run needs in Config.BinDir.
const (
	RefMTABin  = "op25b-refmta"
	AgentBin   = "op25b-agent"
	TestbedBin = "op25b-testbed" // runs the middleboxes
)

// Config is one testbed run.
type Config struct {
	// BinDir holds RefMTABin, AgentBin and TestbedBin.
	BinDir string
	// Scenarios to run by name; all when empty.
	Scenarios []string
	// Timeout of each probe, passed to the agent (--timeout).
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

// agentDeadline bounds one agent run: a control probe and three port probes
// per family, each at most timeout, with room for the agent's own set-up.
func agentDeadline(timeout time.Duration) time.Duration {
	return 8*timeout + 10*time.Second
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
	binDir, err := filepath.Abs(cfg.BinDir)
	if err != nil {
		return fmt.Errorf("testbed: --bin: %w", err)
	}
	if err := Preflight(binDir); err != nil {
		return err
	}
	if removed, err := Sweep(ctx, log); err != nil {
		return fmt.Errorf("testbed: sweep: %w", err)
	} else if len(removed) > 0 {
		log.Info("swept stale namespaces", "count", len(removed))
	}

	lock, id, err := newRun()
	if err != nil {
		return err
	}
	defer lock.release()
	rep.RunID = id
	log = log.With("run", id)

	stateDir, err := makeStateDir(id)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)

	topo, err := newTopology(id, scenarios, log)
	if err != nil {
		return err
	}
	// Clean-up runs on a context of its own: when ctx is cancelled by a
	// signal, that is exactly when clean-up must still happen.
	cleanCtx, cancelClean := context.WithTimeout(context.WithoutCancel(ctx), cleanupLimit)
	defer cancelClean()
	var children []*child
	defer func() {
		log.Info("cleaning up")
		stopChildren(children)
		// A context of its own: a pipeline run may have outlived cleanCtx.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupLimit)
		defer cancel()
		if terr := topo.teardown(tctx); terr != nil {
			log.Error("teardown", "err", terr)
			err = errors.Join(err, fmt.Errorf("testbed: teardown: %w", terr))
		}
	}()

	setupStart := time.Now()
	log.Info("building topology", "scenarios", len(scenarios), "namespaces", len(topo.namespaces()))
	if err := topo.build(ctx); err != nil {
		return fmt.Errorf("testbed: topology: %w", err)
	}

	identity := filepath.Join(stateDir, "identity.json")
	refmta, err := startChild(RefMTABin, log, "ip", "netns", "exec", topo.mta,
		filepath.Join(binDir, RefMTABin),
		"--listen", MTAv4.String(), "--listen", MTAv6.String(), "--state-dir", stateDir)
	if err != nil {
		return err
	}
	children = append(children, refmta)
	defer func() { rep.RefMTALog = refmta.out.String() }()

	mboxes := make(map[string][]*child) // by scenario
	readyFiles := make(map[*child]string)
	for _, s := range topo.sites {
		for _, mb := range s.scenario.Middleboxes {
			ready := filepath.Join(stateDir, fmt.Sprintf("middlebox-%s-%d.ready", s.scenario.Name, mb.Port))
			argv := []string{"ip", "netns", "exec", s.isp, filepath.Join(binDir, TestbedBin), "middlebox",
				"--mode", mb.Mode, "--port", strconv.Itoa(int(mb.Port)), "--ready", ready, "--log-level", "debug"}
			if mb.Hostname != "" {
				argv = append(argv, "--hostname", mb.Hostname)
			}
			c, err := startChild(fmt.Sprintf("middlebox %s/%s", s.scenario.Name, mb.Mode), log, argv...)
			if err != nil {
				return err
			}
			children = append(children, c)
			mboxes[s.scenario.Name] = append(mboxes[s.scenario.Name], c)
			readyFiles[c] = ready
		}
	}
	for c, ready := range readyFiles {
		if err := c.waitFor(ctx, startTimeout, "listening", fileExists(ready)); err != nil {
			return err
		}
	}
	if err := refmta.waitFor(ctx, startTimeout, "writing identity.json", identityReady(identity)); err != nil {
		return err
	}
	rep.SetupMS = time.Since(setupStart).Milliseconds()
	log.Info("testbed up", "setup", time.Since(setupStart).Round(time.Millisecond))

	rep.Scenarios = make([]ScenarioReport, len(topo.sites))
	var wg sync.WaitGroup
	for i, s := range topo.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sr := runAgent(ctx, binDir, identity, cfg.Timeout, s, log)
			if !sr.Passed {
				sr.Ruleset = routerRuleset(cleanCtx, s)
				for _, c := range mboxes[s.scenario.Name] {
					sr.MiddleboxLogs += "== " + c.name + "\n" + c.out.String()
				}
			}
			rep.Scenarios[i] = sr
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("testbed: interrupted: %w", context.Cause(ctx))
	}
	for _, c := range children {
		if c.exited() {
			return fmt.Errorf("testbed: %s exited during the run (%v): %s", c.name, c.err, c.out.String())
		}
	}
	if cfg.Pipeline != nil {
		rep.Passed = true // as far as the checks go; Run has the last word
		for _, sr := range rep.Scenarios {
			rep.Passed = rep.Passed && sr.Passed
		}
		if err := rep.WriteTable(cfg.Pipeline.Summary); err != nil {
			return err
		}
		return runPipeline(ctx, cfg, binDir, stateDir, identity, topo, &refmta, &children, log)
	}
	return nil
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
		wg.Add(1)
		go func() { defer wg.Done(); c.stop() }()
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

// runAgent runs one agent round in the scenario's agent namespace and
// compares its report with the expectations.
func runAgent(ctx context.Context, binDir, identity string, timeout time.Duration, s site, log *slog.Logger) ScenarioReport {
	sr := ScenarioReport{Name: s.scenario.Name, Description: s.scenario.Doc}
	ctx, cancel := context.WithTimeout(ctx, agentDeadline(timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.agent,
		filepath.Join(binDir, AgentBin), "check",
		"--refmta", identity, "--format", "json", "--timeout", timeout.String(), "--quiet")
	var stdout strings.Builder
	stderr := newTail(32 << 10)
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = stopGrace

	log.Info("agent started", "scenario", s.scenario.Name)
	start := time.Now()
	err := cmd.Run()
	sr.AgentMS = time.Since(start).Milliseconds()
	sr.AgentExit = exitCode(err)

	var report *op25bv1.ProbeReport
	switch {
	case ctx.Err() != nil:
		sr.AgentError = fmt.Sprintf("agent killed after %s: %v", time.Since(start).Round(time.Millisecond), ctx.Err())
	default:
		pr := new(op25bv1.ProbeReport)
		if perr := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(stdout.String()), pr); perr != nil {
			sr.AgentError = fmt.Sprintf("agent output is not a ProbeReport (exit %d, %v): %v: %q",
				sr.AgentExit, err, perr, clip(stdout.String(), 200))
		} else {
			report = pr
		}
		// The agent exits 0 whenever the round ran, whatever it found, so
		// any other status is a failed run even with a report on stdout.
		if err != nil && sr.AgentError == "" {
			sr.AgentError = fmt.Sprintf("agent failed: %v", err)
		}
	}
	sr.Rows = Compare(s.scenario, report, sr.AgentError)
	sr.Passed = sr.passed()
	if !sr.Passed || err != nil {
		sr.AgentStderr = stderr.String()
	}
	failed := 0
	for _, r := range sr.Rows {
		if !r.Pass {
			failed++
		}
	}
	log.Info("agent done", "scenario", s.scenario.Name, "passed", sr.Passed, "failed_rows", failed,
		"exit", sr.AgentExit, "took", time.Duration(sr.AgentMS)*time.Millisecond)
	return sr
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
