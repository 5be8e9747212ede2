// Command op25b-testbed runs the emulated-ISP testbed (package
// deploy/testbed) and its middleboxes.
//
//	op25b-testbed run --bin DIR [--report FILE] [--scenario NAME]... [--timeout 3s]
//	op25b-testbed validity --bin DIR [--probes 1000] [--hosts 5] [--pace 2s] [--report FILE] [--markdown FILE]
//	op25b-testbed sweep
//	op25b-testbed middlebox --mode relay|strip|mitm --port N --hostname NAME [--ready FILE]
//	op25b-testbed impair --dev NAME --peer-netns NS --peer-dev NAME [--delay D] [--jitter D] [--loss P] [--stats FILE] [--ready FILE]
//	op25b-testbed hog --addr IP:PORT --source IP,IP... [--ready FILE]
//
// run, validity and sweep need root. middlebox, impair and hog are what run starts
// inside the testbed's namespaces (impair in the transit namespace, to
// make the impaired link between it and an ISP router; hog beside the busy
// reference MTA, to hold its sessions); they are not meant to be run by
// hand. Every flag can
// also be set from OP25B_TESTBED_<FLAG> (for example OP25B_TESTBED_BIN);
// the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/op25b/observatory/deploy/testbed"
	"github.com/op25b/observatory/deploy/testbed/impair"
	"github.com/op25b/observatory/deploy/testbed/middlebox"
	"github.com/op25b/observatory/internal/flagenv"
)

const usage = `usage:
  op25b-testbed run --bin DIR [--report FILE] [--scenario NAME]... [--timeout 3s]
  op25b-testbed validity --bin DIR [--probes 1000] [--hosts 5] [--pace 2s] [--report FILE] [--markdown FILE]
  op25b-testbed sweep
  op25b-testbed middlebox --mode relay|strip|mitm --port N --hostname NAME [--ready FILE]
  op25b-testbed impair --dev NAME --peer-netns NS --peer-dev NAME [--delay D] [--jitter D] [--loss P] [--stats FILE] [--ready FILE]
  op25b-testbed hog --addr IP:PORT --source IP,IP... [--ready FILE]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// After the first signal clean-up is under way; restoring the default
	// lets a second one end the process at once (the next run sweeps).
	go func() { <-ctx.Done(); stop() }()

	var code int
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		code = runCmd(ctx, args)
	case "validity":
		code = validityCmd(ctx, args)
	case "sweep":
		code = sweepCmd(ctx, args)
	case "middlebox":
		code = middleboxCmd(ctx, args)
	case "impair":
		code = impairCmd(ctx, args)
	case "hog":
		code = hogCmd(ctx, args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "op25b-testbed: unknown command %q\n%s", cmd, usage)
		code = 2
	}
	stop()
	os.Exit(code)
}

// parse parses args into fs, applies the environment and builds the logger.
// It returns false when the program should exit with code.
func parse(fs *flag.FlagSet, args []string, logLevel *string) (*slog.Logger, int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return nil, 2, false
	}
	if err := flagenv.Apply(fs, "OP25B_TESTBED"); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		return nil, 2, false
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: --log-level: %v\n", fs.Name(), err)
		return nil, 2, false
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), 0, true
}

func runCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed run", flag.ContinueOnError)
	var (
		cfg       testbed.Config
		scenarios flagenv.List
		report    string
		logLevel  string
	)
	fs.StringVar(&cfg.BinDir, "bin", "", "directory holding op25b-refmta, op25b-agent and op25b-testbed (required)")
	fs.StringVar(&report, "report", "testbed-report.json", "write the JSON report to this file")
	fs.Var(&scenarios, "scenario", "run only this scenario, repeatable or comma-separated (default: all)")
	fs.DurationVar(&cfg.Timeout, "timeout", 3*time.Second, "timeout of each probe, passed to the agent")
	fs.StringVar(&logLevel, "log-level", "info", "progress on stderr: debug, info, warn or error")
	pipeline := fs.Bool("pipeline", false, "after the checks, keep the network running with a collector (embedded PostgreSQL) and an agent daemon behind every ISP, printing the per-ASN summary, until Ctrl-C")
	hold := fs.Duration("hold", 0, "with --pipeline: stop after this long (0: until Ctrl-C)")
	log, code, ok := parse(fs, args, &logLevel)
	if !ok {
		return code
	}
	if cfg.BinDir == "" {
		fmt.Fprintln(os.Stderr, "op25b-testbed run: --bin is required")
		return 2
	}
	cfg.Scenarios = scenarios
	cfg.Log = log
	if *pipeline {
		cfg.Pipeline = &testbed.Pipeline{Hold: *hold, Summary: os.Stdout}
	}

	rep, err := testbed.Run(ctx, cfg)
	if err != nil {
		log.Error("testbed run failed", "err", err)
	}
	if len(rep.Scenarios) > 0 && cfg.Pipeline == nil { // the pipeline mode printed it before running
		if err := rep.WriteTable(os.Stdout); err != nil {
			log.Error("writing table", "err", err)
		}
	}
	if err := rep.WriteFile(report); err != nil {
		log.Error("writing report", "err", err)
		return 1
	}
	log.Info("report written", "file", report, "passed", rep.Passed)
	if !rep.Passed {
		return 1
	}
	return 0
}

func validityCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed validity", flag.ContinueOnError)
	var (
		cfg                        testbed.ValidityConfig
		scenarios                  flagenv.List
		report, markdown, logLevel string
	)
	fs.StringVar(&cfg.BinDir, "bin", "", "directory holding op25b-refmta, op25b-agent and op25b-testbed (required)")
	fs.Var(&scenarios, "scenario", "measure only this scenario (and its baseline), repeatable or comma-separated (default: every scenario with a baseline)")
	fs.IntVar(&cfg.Probes, "probes", 1000, "least number of probes per scenario")
	fs.IntVar(&cfg.Hosts, "hosts", 5, "agent hosts per scenario running rounds in parallel, each with its own address (1 to 5)")
	fs.DurationVar(&cfg.Pace, "pace", 2*time.Second, "least time between the starts of two rounds on one host")
	fs.StringVar(&report, "report", "validity-report.json", "write the JSON report to this file")
	fs.StringVar(&markdown, "markdown", "", "write the \"## Validity\" section of BENCHMARKS.md to this file")
	fs.StringVar(&logLevel, "log-level", "info", "progress on stderr: debug, info, warn or error")
	log, code, ok := parse(fs, args, &logLevel)
	if !ok {
		return code
	}
	if cfg.BinDir == "" {
		fmt.Fprintln(os.Stderr, "op25b-testbed validity: --bin is required")
		return 2
	}
	cfg.Scenarios = scenarios
	cfg.Log = log
	rep, err := testbed.Validity(ctx, cfg)
	if err != nil {
		log.Error("validity run failed", "err", err)
	}
	if werr := rep.WriteFile(report); werr != nil {
		log.Error("writing report", "err", werr)
		return 1
	}
	out := io.Writer(os.Stdout)
	if markdown != "" {
		f, ferr := os.Create(markdown)
		if ferr != nil {
			log.Error("markdown", "err", ferr)
			return 1
		}
		defer f.Close()
		out = f
	}
	if werr := rep.WriteMarkdown(out, cfg); werr != nil {
		log.Error("markdown", "err", werr)
		return 1
	}
	log.Info("validity report written", "file", report)
	if err != nil {
		return 1
	}
	return 0
}

func sweepCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed sweep", flag.ContinueOnError)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	log, code, ok := parse(fs, args, logLevel)
	if !ok {
		return code
	}
	if os.Geteuid() != 0 {
		log.Error("sweep needs root (it deletes network namespaces); run it with sudo")
		return 1
	}
	removed, err := testbed.Sweep(ctx, log)
	log.Info("sweep done", "removed", len(removed))
	if err != nil {
		log.Error("sweep", "err", err)
		return 1
	}
	return 0
}

func middleboxCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed middlebox", flag.ContinueOnError)
	var (
		mode, hostname, ready, logLevel string
		port                            uint
	)
	fs.StringVar(&mode, "mode", "", "relay (the ISP's SMTP relay), strip (STARTTLS stripper) or mitm (TLS interception)")
	fs.UintVar(&port, "port", 0, "port to listen on, IPv4 and IPv6")
	fs.StringVar(&hostname, "hostname", "middlebox.isp.example", "host name in the relay's banner or the mitm certificate")
	fs.StringVar(&ready, "ready", "", "file to create once listening")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	log, code, ok := parse(fs, args, &logLevel)
	if !ok {
		return code
	}
	log = log.With("mode", mode, "port", port)
	if port == 0 || port > 65535 {
		log.Error("--port must be 1..65535")
		return 2
	}
	var h middlebox.Handler
	switch mode {
	case "relay":
		h = &middlebox.Relay{Hostname: hostname, Log: log}
	case "strip":
		h = &middlebox.Stripper{Upstream: middlebox.OriginalDst, Log: log}
	case "mitm":
		m, err := middlebox.NewMITM(hostname, middlebox.OriginalDst, log)
		if err != nil {
			log.Error("mitm", "err", err)
			return 1
		}
		h = m
	default:
		log.Error("--mode must be relay, strip or mitm")
		return 2
	}
	lns, err := middlebox.Listen(uint16(port))
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	if err := markReady(ready); err != nil {
		log.Error("ready file", "err", err)
		return 1
	}
	log.Info("middlebox listening")
	if err := middlebox.Serve(ctx, lns, h); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}

func impairCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed impair", flag.ContinueOnError)
	var (
		dev, peerNetns, peerDev, stats, ready, logLevel string
		shape                                           impair.Shape
		seed                                            uint64
	)
	fs.StringVar(&dev, "dev", "", "name of the TUN device made in this namespace (required)")
	fs.StringVar(&peerNetns, "peer-netns", "", "network namespace the other TUN device moves into (required)")
	fs.StringVar(&peerDev, "peer-dev", "", "name of the other TUN device in --peer-netns (required)")
	fs.DurationVar(&shape.Delay, "delay", 0, "one-way delay, each way")
	fs.DurationVar(&shape.Jitter, "jitter", 0, "random extra delay in [-jitter, +jitter] per packet, each way (reorders)")
	fs.Float64Var(&shape.Loss, "loss", 0, "probability that a packet is dropped, each way (0..1)")
	fs.IntVar(&shape.Queue, "queue", impair.DefaultQueue, "packets waiting out their delay, each way, beyond which packets are dropped")
	fs.Uint64Var(&seed, "seed", 1, "seed of the random draws")
	fs.StringVar(&stats, "stats", "", "write the link's counters (JSON) to this file every second and on exit")
	fs.StringVar(&ready, "ready", "", "file to create once both devices exist")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	log, code, ok := parse(fs, args, &logLevel)
	if !ok {
		return code
	}
	if dev == "" || peerNetns == "" || peerDev == "" {
		log.Error("--dev, --peer-netns and --peer-dev are required")
		return 2
	}
	link, err := impair.NewLink(shape, shape, seed)
	if err != nil {
		log.Error("impair", "err", err)
		return 2
	}
	local, peer, err := impair.OpenPair(ctx, dev, peerNetns, peerDev)
	if err != nil {
		log.Error("impair", "err", err)
		return 1
	}
	if err := markReady(ready); err != nil {
		log.Error("ready file", "err", err)
		local.Close()
		peer.Close()
		return 1
	}
	log.Info("impaired link up", "dev", dev, "peer", peerNetns+"/"+peerDev, "shape", shape.String(), "seed", seed)
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx, local, peer) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	write := func() {
		if stats == "" {
			return
		}
		if err := link.Stats().WriteFile(stats); err != nil {
			log.Warn("stats", "err", err)
		}
	}
	for {
		select {
		case <-tick.C:
			write()
		case err := <-done:
			write()
			st := link.Stats()
			log.Info("impaired link down", "forward", fmt.Sprintf("%+v", st.Forward), "reverse", fmt.Sprintf("%+v", st.Reverse))
			if err != nil {
				log.Error("impair", "err", err)
				return 1
			}
			return 0
		}
	}
}

func hogCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-testbed hog", flag.ContinueOnError)
	var (
		addr, ready, logLevel string
		sources               flagenv.List
	)
	fs.StringVar(&addr, "addr", "", "plaintext SMTP address of the reference MTA to saturate, IP:PORT (required)")
	fs.Var(&sources, "source", "local source addresses: one per session to hold, and one more to check the refusal (repeatable or comma-separated)")
	fs.StringVar(&ready, "ready", "", "file to create once every session is held")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	log, code, ok := parse(fs, args, &logLevel)
	if !ok {
		return code
	}
	h := testbed.Hog{Log: log}
	var err error
	if h.Addr, err = netip.ParseAddrPort(addr); err != nil {
		log.Error("--addr", "err", err)
		return 2
	}
	for _, s := range sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			log.Error("--source", "err", err)
			return 2
		}
		h.Sources = append(h.Sources, a)
	}
	h.Ready = func() {
		if err := markReady(ready); err != nil {
			log.Error("ready file", "err", err)
		}
	}
	if err := h.Run(ctx); err != nil {
		log.Error("hog", "err", err)
		return 1
	}
	return 0
}

// markReady creates the file the testbed waits for (none when path is
// empty): a subcommand is ready.
func markReady(path string) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, nil, 0o644)
}
