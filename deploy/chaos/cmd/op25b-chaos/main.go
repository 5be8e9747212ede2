// Command op25b-chaos runs the chaos run (package deploy/chaos,
// docs/chaos.md): the real collector, PostgreSQL, two reference MTAs and
// several agents under one fault after another, and prints one table.
//
//	op25b-chaos run --bin DIR [--markdown FILE] [--phases NAME,...] [--pg-down 2m] [...]
//	op25b-chaos sweep
//	op25b-chaos flood --mode idle|requests --target HOST:PORT [...]
//
// run and sweep need root. flood is what run starts in the flood's network
// namespace; it is not meant to be run by hand. Every flag can also be set
// from OP25B_CHAOS_<FLAG> (for example OP25B_CHAOS_PG_DOWN); the command
// line wins.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/op25b/observatory/deploy/chaos"
	"github.com/op25b/observatory/internal/flagenv"
)

const usage = `usage:
  op25b-chaos run --bin DIR [--markdown FILE] [--phases NAME,...] [--pg-down 2m] [--fault 60s] [...]
  op25b-chaos sweep
  op25b-chaos flood --mode idle|requests --target HOST:PORT [...]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	var code int
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		code = runCmd(ctx, args)
	case "sweep":
		if err := chaos.Sweep(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "op25b-chaos sweep:", err)
			code = 1
		}
	case "flood":
		code = floodCmd(ctx, args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "op25b-chaos: unknown command %q\n%s", cmd, usage)
		code = 2
	}
	stop()
	os.Exit(code)
}

// parse parses args into fs and applies the environment; false: exit with
// the code.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	if err := flagenv.Apply(fs, "OP25B_CHAOS"); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		return 2, false
	}
	return 0, true
}

func runCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-chaos run", flag.ContinueOnError)
	d := chaos.Defaults
	var cfg chaos.Config
	var phases flagenv.List
	fs.StringVar(&cfg.BinDir, "bin", "", "directory holding op25b-collector, op25b-refmta and op25b-agent (required; make build writes out/)")
	fs.StringVar(&cfg.WorkDir, "work", "", "directory for the logs and state (default: a new one under /var/tmp, kept after the run)")
	fs.Var(&phases, "phases", "run only these phases, comma-separated: "+strings.Join(chaos.AllPhases, ", ")+" (default: all; the drain always runs)")
	fs.IntVar(&cfg.Agents, "agents", d.Agents, "agents on an ordinary disk (two more always run: one with its spool on a tmpfs, one with a 1 MiB spool)")
	fs.DurationVar(&cfg.Interval, "interval", d.Interval, "the agents' round interval (the collector's --interval)")
	fs.DurationVar(&cfg.RefreshEvery, "refresh-every", d.RefreshEvery, "the collector's --refresh-every")
	fs.DurationVar(&cfg.Baseline, "baseline", d.Baseline, "length of the phase without a fault")
	fs.DurationVar(&cfg.Settle, "settle", d.Settle, "normal running after each fault, inside its phase")
	fs.DurationVar(&cfg.Recover, "recover", d.Recover, "how long ingest gets to resume after a fault before the harness restarts the collector")
	fs.DurationVar(&cfg.Fault, "fault", d.Fault, "length of the ENOSPC, disk-full and flood faults")
	fs.DurationVar(&cfg.PGDown, "pg-down", d.PGDown, "how long PostgreSQL stays stopped")
	fs.DurationVar(&cfg.Quiet, "quiet", d.Quiet, "how long no agent runs (a quiet hour's refresh ticks at --refresh-every)")
	fs.DurationVar(&cfg.Drain, "drain", d.Drain, "normal running at the end, before the agents stop and the results are counted")
	fs.IntVar(&cfg.Kills, "kills", d.Kills, "SIGKILLs of the collector")
	fs.IntVar(&cfg.AgentKills, "agent-kills", d.AgentKills, "SIGKILLs of an agent during a spool append")
	fs.IntVar(&cfg.PGKills, "pg-kills", d.PGKills, "SIGKILLs of PostgreSQL's postmaster")
	fs.IntVar(&cfg.IdleConns, "idle-conns", d.IdleConns, "idle HTTP connections from one address")
	fs.Uint64Var(&cfg.CollectorNofile, "collector-nofile", d.CollectorNofile, "the collector's RLIMIT_NOFILE")
	markdown := fs.String("markdown", "", "also write the BENCHMARKS.md section to this file")
	command := fs.String("command", "", "the command named in the BENCHMARKS.md section (default: this command line)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if cfg.BinDir == "" {
		fmt.Fprintln(os.Stderr, "op25b-chaos run: --bin is required")
		return 2
	}
	cfg.Phases = phases
	if err := chaos.CheckPhases(cfg.Phases); err != nil {
		fmt.Fprintln(os.Stderr, "op25b-chaos run:", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "op25b-chaos run:", err)
		return 1
	}
	cfg.Self = self
	cfg.Progress = os.Stderr
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "op25b-chaos run:", err)
		return 1
	}
	rep.Command = *command
	if rep.Command == "" {
		rep.Command = "op25b-chaos " + strings.Join(os.Args[1:], " ")
	}
	fmt.Println(rep.Table())
	if *markdown != "" {
		if err := os.WriteFile(*markdown, []byte(rep.Markdown()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "op25b-chaos run:", err)
			return 1
		}
	}
	return 0
}

// floodCmd runs one flood and prints a JSON line when its load is in
// place and one when it ends; an idle flood then holds its connections
// until its standard input ends.
func floodCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("op25b-chaos flood", flag.ContinueOnError)
	mode := fs.String("mode", "", "idle: hold keep-alive connections; requests: send requests as fast as answered")
	target := fs.String("target", "", "the HTTP server, HOST:PORT")
	conns := fs.Int("conns", 20000, "idle: connections to open")
	hold := fs.Duration("hold", time.Minute, "idle: how long to hold them")
	concurrency := fs.Int("concurrency", 64, "connections opened at a time (idle) or workers (requests)")
	duration := fs.Duration("duration", time.Minute, "requests: how long to send")
	var paths flagenv.List
	fs.Var(&paths, "paths", "requests: paths to request in turn (default /)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	enc := json.NewEncoder(os.Stdout)
	switch *mode {
	case "idle":
		// The connections stay open after the "done" line until stdin
		// ends: the harness measures until it has read every flood's.
		chaos.Idle(ctx, *target, "/healthz", *conns, *concurrency, *hold, func(r chaos.IdleReport) {
			enc.Encode(chaos.FloodLine{Event: "ready", Idle: &r})
		}, func(r chaos.IdleReport) {
			enc.Encode(chaos.FloodLine{Event: "done", Idle: &r})
			io.Copy(io.Discard, os.Stdin)
		})
	case "requests":
		if len(paths) == 0 {
			paths = flagenv.List{"/"}
		}
		enc.Encode(chaos.FloodLine{Event: "ready"})
		rep := chaos.Flood(ctx, "http://"+*target, paths, *concurrency, *duration)
		enc.Encode(chaos.FloodLine{Event: "done", Flood: &rep})
	default:
		fmt.Fprintln(os.Stderr, "op25b-chaos flood: --mode idle or requests")
		return 2
	}
	return 0
}
