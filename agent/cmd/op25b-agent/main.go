// Command op25b-agent is the OP25B Observatory agent: it probes outbound
// SMTP (ports 25, 587 and 465) against reference MTAs and reports, per port
// and address family, whether the line it runs on lets it through.
//
//	op25b-agent check --refmta SPEC [flags]             run one round and print a report
//	op25b-agent check --submit URL [flags]              the same against a collector's reference MTAs, and contribute it
//	op25b-agent run --collector ADDR[,ADDR...] [flags]  the daemon: enroll, follow the schedule, spool, deliver
//	op25b-agent version                                 print the version
//
// Every flag can also be set from the environment: --control-port from
// OP25B_CONTROL_PORT, and so on; a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/op25b/observatory/agent/contribute"
	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/agent/refmtaspec"
	"github.com/op25b/observatory/agent/report"
	"github.com/op25b/observatory/internal/advice"
	"github.com/op25b/observatory/internal/flagenv"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK     = 0 // the round ran, whatever it found
	exitFailed = 1 // the round could not run
	exitUsage  = 2
)

const usage = `usage:
  op25b-agent check --submit https://COLLECTOR [flags]
  op25b-agent check --refmta SPEC [--refmta SPEC...] [flags]
  op25b-agent run --collector HOST:PORT[,HOST:PORT...] [--enroll TOKEN] [flags]
  op25b-agent version

check runs one round of probes and prints what this line does with
outbound SMTP. With --submit it probes the collector's reference MTAs and
contributes the round to its dataset, without enrolling, and prints the
link to the round's page. SPEC is the path or http(s) URL of a reference
MTA's identity document, or KEY@ADDR[,ADDR...]. run takes the address of
every collector sharing one database and fails over between them.
`

func main() {
	if code, ok := runAsService(os.Args[1:]); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "run":
		return runDaemon(ctx, args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, "op25b-agent", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "op25b-agent: unknown command %q (want check, run or version)\n", args[0])
	return exitUsage
}

type specsFlag []string

func (s *specsFlag) String() string { return strings.Join(*s, " ") }

// Set adds one spec, or several separated by spaces, as
// OP25B_REFMTA="SPEC SPEC" gives them.
func (s *specsFlag) Set(v string) error {
	*s = append(*s, strings.Fields(v)...)
	return nil
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		specs       specsFlag
		portsFlag   string
		controlPort uint
		timeout     time.Duration
		maxTimeout  time.Duration
		attempts    int
		familyFlag  string
		format      string
		quiet       bool
		logLevel    string
		langFlag    string
		submitURL   string
	)
	fs := flag.NewFlagSet("op25b-agent check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nflags (each also from OP25B_<FLAG>, e.g. OP25B_CONTROL_PORT):\n")
		fs.PrintDefaults()
	}
	fs.Var(&specs, "refmta", "reference MTA to probe: identity file, http(s) URL of one, or KEY@ADDR[,ADDR...] (repeatable; required without --submit)")
	fs.StringVar(&submitURL, "submit", "", "contribute the round to the collector at this web address (https://observatory.example), probing its reference MTAs unless --refmta is given, and print the link to the round's page")
	fs.StringVar(&portsFlag, "ports", "25,587,465", "SMTP ports to probe (given explicitly, replaces the identity's ports); 465 is spoken with implicit TLS")
	fs.UintVar(&controlPort, "control-port", refmtaspec.DefaultControlPort, "control port (given explicitly, replaces the identity's)")
	fs.DurationVar(&timeout, "timeout", probe.DefaultTimeout, "time each connection attempt is given, and the least each probe attempt is given")
	fs.DurationVar(&maxTimeout, "max-timeout", probe.DefaultMaxTimeout, "the most a probe attempt is given on a slow path (deadlines follow the round-trip time)")
	fs.IntVar(&attempts, "attempts", probe.DefaultAttempts, "most attempts per port: a verdict other than OPEN needs two that agree (1: no confirmation)")
	fs.StringVar(&familyFlag, "family", "any", "address family to probe: any, 4 or 6")
	fs.StringVar(&format, "format", "table", "output: table or json (protojson of op25b.v1.ProbeReport)")
	fs.StringVar(&langFlag, "lang", "", "language of the advice after the table: en or ja (default: from LC_ALL, LC_MESSAGES or LANG; on Windows, the display language)")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := flagenv.Apply(fs, "OP25B"); err != nil {
		return usageError(stderr, err.Error())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true }) // after Apply: the environment counts as given

	if fs.NArg() > 0 {
		return usageError(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	var collector *contribute.Collector
	if submitURL != "" {
		c, err := contribute.Parse(submitURL)
		if err != nil {
			return usageError(stderr, err.Error())
		}
		collector = c
	}
	if len(specs) == 0 && collector == nil {
		return usageError(stderr, "--refmta or --submit is required")
	}
	var opts refmtaspec.Options
	if given["ports"] {
		ports, err := parsePorts(portsFlag)
		if err != nil {
			return usageError(stderr, err.Error())
		}
		opts.Ports = ports
	}
	if controlPort == 0 || controlPort > 65535 {
		return usageError(stderr, fmt.Sprintf("--control-port %d out of range", controlPort))
	}
	if given["control-port"] {
		opts.ControlPort = uint16(controlPort)
	}
	switch familyFlag {
	case "any":
	case "4":
		opts.Family = probe.IPv4
	case "6":
		opts.Family = probe.IPv6
	default:
		return usageError(stderr, fmt.Sprintf("--family %q: want any, 4 or 6", familyFlag))
	}
	if format != "table" && format != "json" {
		return usageError(stderr, fmt.Sprintf("--format %q: want table or json", format))
	}
	if timeout <= 0 || maxTimeout <= 0 {
		return usageError(stderr, "--timeout and --max-timeout must be positive")
	}
	if maxTimeout < timeout {
		return usageError(stderr, fmt.Sprintf("--max-timeout %s is less than --timeout %s", maxTimeout, timeout))
	}
	if attempts < 1 || attempts > 10 {
		return usageError(stderr, fmt.Sprintf("--attempts %d: want 1 to 10", attempts))
	}
	lang, err := advice.Lang(langFlag, localeEnv(os.Getenv, systemLanguage))
	if err != nil {
		return usageError(stderr, "--lang: "+err.Error())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return usageError(stderr, fmt.Sprintf("--log-level %q: want debug, info, warn or error", logLevel))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if collector != nil && collector.Insecure() {
		fmt.Fprintf(stderr, "op25b-agent: warning: %s is plain http: the reference MTAs' keys and your round could be changed on the way; use https\n", collector)
	}
	var targets []probe.Target
	for _, spec := range specs {
		id, err := refmtaspec.Resolve(ctx, spec)
		if err != nil {
			return failure(stderr, err)
		}
		targets = append(targets, id.Targets(opts)...)
	}
	if len(specs) == 0 {
		sch, err := collector.Schedule(ctx)
		if err != nil {
			return failure(stderr, err)
		}
		if targets, err = scheduleTargets(sch, opts); err != nil {
			return failure(stderr, err)
		}
		if !given["timeout"] && sch.GetProbeTimeout().AsDuration() > 0 {
			timeout = min(sch.GetProbeTimeout().AsDuration(), maxTimeout)
		}
	}
	if len(targets) == 0 {
		return failure(stderr, fmt.Errorf("no reference MTA has an address of family %s", opts.Family))
	}

	cfg := probe.Config{Timeout: timeout, MaxTimeout: maxTimeout, Attempts: attempts, Logger: log}
	if !quiet && isTerminal(stderr) {
		total := 0
		for _, t := range targets {
			total += 1 + len(t.Ports)
		}
		cfg.Progress = report.Progress(stderr, total)
	}
	round := report.Round{AgentVersion: version, Started: time.Now()}
	round.ID = uuidv7.New(round.Started)
	results, err := probe.Round(ctx, cfg, targets)
	if err != nil {
		if ctx.Err() != nil {
			return failure(stderr, errors.New("interrupted; no report"))
		}
		return failure(stderr, err)
	}
	round.Finished, round.Results = time.Now(), results
	if err := writeRound(stdout, round, format, lang); err != nil {
		return failure(stderr, err)
	}
	if collector == nil {
		return exitOK
	}
	resp, err := collector.Submit(ctx, report.ProbeReport(round))
	if err != nil {
		return failure(stderr, fmt.Errorf("the round was not submitted to %s: %w", collector, err))
	}
	// The table's reader reads on; the JSON's stdout stays one document.
	w := stdout
	if format == "json" {
		w = stderr
	}
	writeSubmitted(w, collector, resp, lang)
	return exitOK
}

// scheduleTargets returns the probe targets of a collector's schedule: its
// reference MTAs on its ports, unless opts names others.
func scheduleTargets(sch *op25bv1.Schedule, opts refmtaspec.Options) ([]probe.Target, error) {
	if opts.Ports == nil {
		for _, p := range sch.GetPorts() {
			opts.Ports = append(opts.Ports, uint16(p))
		}
	}
	var targets []probe.Target
	for _, m := range sch.GetReferenceMtas() {
		id, err := refmtaspec.FromProto(m)
		if err != nil {
			return nil, fmt.Errorf("the collector lists an unusable reference MTA %q: %w", m.GetId(), err)
		}
		targets = append(targets, id.Targets(opts)...)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("no reference MTA of the collector has an address of family %s", opts.Family)
	}
	return targets, nil
}

// writeSubmitted says where the round went and where its page is.
func writeSubmitted(w io.Writer, c *contribute.Collector, resp *op25bv1.SubmitRoundResponse, lang string) {
	sub := resp.GetSubmission()
	var nets []string
	for _, n := range sub.GetNetworks() {
		s := n.GetPrefix()
		if n.GetAsn() != 0 {
			s += fmt.Sprintf(" AS%d", n.GetAsn())
			if n.GetAsName() != "" {
				s += " " + n.GetAsName()
			}
			if n.GetCountry() != "" {
				s += " (" + n.GetCountry() + ")"
			}
		}
		if s != "" {
			nets = append(nets, s)
		}
	}
	where := strings.Join(nets, ", ")
	if lang == "ja" {
		fmt.Fprintf(w, "\n%s に %d 件の結果を提供しました", c, len(sub.GetResults()))
		if where != "" {
			fmt.Fprintf(w, "(測定元: %s)", where)
		}
		fmt.Fprintf(w, "。\n結果ページ(共有できます): %s\n", c.ShareURL(resp))
		return
	}
	fmt.Fprintf(w, "\nSubmitted %d results to %s", len(sub.GetResults()), c)
	if where != "" {
		fmt.Fprintf(w, ", measured from %s", where)
	}
	fmt.Fprintf(w, ".\nShare this result: %s\n", c.ShareURL(resp))
}

// writeRound writes a round's report: protojson, or the table followed by
// the advice in lang.
func writeRound(w io.Writer, round report.Round, format, lang string) error {
	if format == "json" {
		return report.WriteJSON(w, round)
	}
	if err := report.WriteTable(w, round); err != nil {
		return err
	}
	var rs []advice.Result
	for _, r := range round.Results {
		rs = append(rs, advice.Result{Port: r.Port, Verdict: r.Verdict})
	}
	return advice.Write(w, rs, lang)
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--ports: %q is not a port", f)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "op25b-agent check: %s (see op25b-agent check -h)\n", msg)
	return exitUsage
}

func failure(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "op25b-agent:", err)
	return exitFailed
}

// isTerminal reports whether w is a terminal, where progress lines help a
// person; in a pipe or a log they are noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
