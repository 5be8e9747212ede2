// Command op25b is the researcher's client of the OP25B Observatory's
// published dataset: which networks block outbound SMTP on port 25 while
// leaving submission (587, 465) open, per ASN, address family and day.
//
//	op25b asns [--country JP] [--class OP25B] [--family ipv4] [--window 30d] [--format table|csv|json] [--sort asn|blocked|agents]
//	op25b asn AS64500 [--family ipv4] [--window 30d]      one ASN: ports, timeline, changes, evidence
//	op25b peers AS64500 [--family ipv4] [--window 30d]    its rank among its country's networks
//	op25b prefixes AS64500 [--family ipv4] [--window 30d] its /24 and /48 prefixes' verdicts, day by day
//	op25b changes [--country JP] [--asn AS64500] [--window 90d]
//	op25b countries [--family ipv4] [--window 30d]
//	op25b info                                            the collector's software, schema, licence, limits
//	op25b export --start 2026-03-01 --end 2026-03-08 [--asn N] [--country CC] [--family F] [--format csv|ndjson|parquet] -o FILE
//	op25b watch [--asn N] [--country CC] [--port 25] [--verdict V,...] [--format table|json]   live results and changes until Ctrl-C
//	op25b version | op25b help [COMMAND]
//
// It reads the collector's HTTP API (/api/v1) at --collector, also set
// from OP25B_COLLECTOR, by default http://127.0.0.1:9090. Exit status: 0
// done, 1 failed (the collector's error is printed), 2 usage error.
//
// An export is written to FILE.partial and renamed to FILE once the
// collector has sent all of it; a transfer that breaks off removes
// FILE.partial and exits 1, so a FILE that exists is always complete.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
	"github.com/op25b/observatory/internal/flagenv"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand: setup declares its flags on fs and returns
// what runs it with the positional arguments.
type command struct {
	name     string
	args     string // synopsis after the name
	summary  string // one line for the command list
	about    string // a paragraph for op25b help NAME
	examples string
	nargs    int // positional arguments required
	setup    func(fs *flag.FlagSet, e *env) func(ctx context.Context, args []string) error
}

var commands []*command // in the order op25b help lists them; filled by init

func init() {
	commands = []*command{asnsCommand, asnCommand, peersCommand, prefixesCommand, changesCommand, countriesCommand, infoCommand, exportCommand, watchCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// env is what every command shares: where to write, the collector, and
// what the terminal can show.
type env struct {
	stdout, stderr io.Writer
	collector      string
	timeout        time.Duration
	collectorFrom  string // the environment variable that set collector, if one did
	color          bool   // class names in colour on stdout
	stderrTTY      bool   // a progress bar on stderr
	now            func() time.Time
}

func (e *env) register(fs *flag.FlagSet) {
	fs.StringVar(&e.collector, "collector", "http://127.0.0.1:9090", "the collector's HTTP address (also OP25B_COLLECTOR)")
	fs.DurationVar(&e.timeout, "timeout", datasetclient.DefaultTimeout, "longest wait for an answer, or in an export for the next byte")
}

// applyEnv sets --collector from OP25B_COLLECTOR unless it was given.
// The other flags are not read from the environment, unlike our daemons':
// OP25B_FAMILY, OP25B_FORMAT or OP25B_TIMEOUT set for op25b-agent must not
// silently filter or reshape a query.
func (e *env) applyEnv(fs *flag.FlagSet) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "collector" })
	name := flagenv.Name("OP25B", "collector")
	if v, ok := os.LookupEnv(name); ok && !given {
		e.collector, e.collectorFrom = v, name
	}
}

func (e *env) client() (*datasetclient.Client, error) {
	c, err := datasetclient.New(e.collector, datasetclient.WithUserAgent("op25b/"+version), datasetclient.WithTimeout(e.timeout))
	if err != nil {
		if e.collectorFrom != "" {
			// op25b-agent run reads the same variable as a gRPC HOST:PORT.
			return nil, usageErrorf("%s: %v (op25b-agent reads %s as a gRPC address; give op25b --collector)", e.collectorFrom, err, e.collectorFrom)
		}
		return nil, usageErrorf("--collector: %v", err)
	}
	return c, nil
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// flagError turns a parse error of the dataset package into a usage
// error, without its "invalid request" prefix.
func flagError(flag string, err error) error {
	return usageErrorf("--%s: %s", flag, strings.TrimPrefix(err.Error(), dataset.ErrInvalid.Error()+": "))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printOverview(stderr)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "op25b", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "op25b: unknown command %q (see op25b help)\n", args[0])
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr, now: time.Now, stderrTTY: isTerminal(stderr),
		color: isTerminal(stdout) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"}
	fs := flag.NewFlagSet("op25b "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // help goes to stdout, below
	e.register(fs)
	exec := cmd.setup(fs, e)
	pos, err := parseArgs(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		cmd.usage(stdout)
		return exitOK
	}
	if err == nil {
		e.applyEnv(fs)
	}
	if err == nil && len(pos) != cmd.nargs {
		switch {
		case len(pos) > cmd.nargs:
			err = usageErrorf("unexpected argument %q", pos[cmd.nargs])
		default:
			err = usageErrorf("missing %s", cmd.args[:strings.IndexAny(cmd.args+" ", " ")])
		}
	}
	if err != nil {
		// The flag package has explained its own errors; ours are told here.
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "op25b %s: %s\n", cmd.name, u.msg)
		}
		fmt.Fprintf(stderr, "usage: op25b %s %s (see op25b help %s)\n", cmd.name, cmd.args, cmd.name)
		return exitUsage
	}
	if err := exec(ctx, pos); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "op25b %s: %s (see op25b help %s)\n", cmd.name, u.msg, cmd.name)
			return exitUsage
		}
		fmt.Fprintf(stderr, "op25b %s: %s\n", cmd.name, explain(err, e.collector))
		return exitFailed
	}
	return exitOK
}

// explain adds a hint to errors that leave a person guessing.
func explain(err error, collector string) string {
	msg := err.Error()
	if errors.Is(err, syscall.ECONNREFUSED) {
		msg += fmt.Sprintf(" (is the collector's HTTP API at %s? set --collector or OP25B_COLLECTOR)", collector)
	}
	return msg
}

// parseArgs parses flags wherever they are among the positional
// arguments (op25b asn AS64500 --family ipv6); "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: op25b %s %s\n\n%s\n\nflags:\n", c.name, c.args, strings.TrimSpace(c.about))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(w)
	(&env{}).register(fs)
	c.setup(fs, &env{})
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nexamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
}

func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printOverview(stdout)
		return exitOK
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "op25b help: unknown command %q\n", args[0])
		printOverview(stderr)
		return exitUsage
	}
	cmd.usage(stdout)
	return exitOK
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, `op25b reads the OP25B Observatory's published dataset: which networks block
outbound SMTP on port 25 (OP25B) and leave submission (587, 465) open, as
measured by volunteers' agents, per ASN, address family and day.

usage: op25b COMMAND [ARGS] [flags]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  version    print the version
  help       explain a command, with examples: op25b help export

Every command asks the collector's HTTP API at --collector (or
OP25B_COLLECTOR), by default http://127.0.0.1:9090.

examples:
  op25b asns --country JP --sort blocked
  op25b asn AS64500
  op25b export --start 2026-03-01 --end 2026-03-08 --country JP -o jp-week.csv
`)
}

// isTerminal reports whether w is a terminal, where colour and progress
// bars help a person; in a pipe or a file they are noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
