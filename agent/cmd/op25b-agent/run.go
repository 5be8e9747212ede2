package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"

	"github.com/op25b/observatory/agent/daemon"
	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/flagenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// runDaemon is `op25b-agent run`: the daemon.
func runDaemon(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("op25b-agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var collectors flagenv.List
	fs.Var(&collectors, "collector", "collector gRPC address, host:port (required); several collectors sharing one database: comma-separated or repeated, the agent uses one at a time and fails over")
	ca := fs.String("collector-ca", "", "CA certificate that signs the collector's (its local CA's ca.pem); empty: system roots")
	enroll := fs.String("enroll", "", "enrollment token; needed once, the credential is then kept in --state-dir")
	enrollFile := fs.String("enroll-file", "", "file whose first line is the enrollment token, instead of --enroll (a secret mounted into a container)")
	state := fs.String("state-dir", defaultStateDir(), "directory for the key, the credential (0600) and the spool")
	label := fs.String("label", "", "free text the operator sees for this agent (never an address)")
	spoolMax := fs.Int64("spool-max-bytes", 64<<20, "bound of the on-disk spool, in bytes (docs/volunteer.md: sizes that work); when full, new results are dropped, counted and reported")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := flagenv.Apply(fs, "OP25B"); err != nil {
		fmt.Fprintln(stderr, "op25b-agent run:", err)
		return exitUsage
	}
	if len(collectors) == 0 {
		fmt.Fprintln(stderr, "op25b-agent run: --collector is required")
		return exitUsage
	}
	token, err := collectorclient.Token(*enroll, *enrollFile)
	if err != nil {
		fmt.Fprintln(stderr, "op25b-agent run:", err)
		return exitUsage
	}
	if *spoolMax <= 0 {
		fmt.Fprintf(stderr, "op25b-agent run: --spool-max-bytes %d: want a positive number of bytes\n", *spoolMax)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(stderr, "op25b-agent run: --log-level:", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fail := func(err error) int {
		log.Error("op25b-agent run: " + err.Error())
		return exitFailed
	}
	// The connection prefers the first address; a fleet given one list
	// spreads over the collectors because each agent shuffles it.
	rand.Shuffle(len(collectors), func(i, j int) { collectors[i], collectors[j] = collectors[j], collectors[i] })
	conn, err := collectorclient.Dial(collectors, *ca)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	id, err := collectorclient.Ensure(ctx, conn, *state, token, op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, *label, version)
	if err != nil {
		return fail(err)
	}
	sp, err := spool.Open(filepath.Join(*state, "spool"), spool.Options{MaxBytes: *spoolMax, Logger: log})
	if err != nil {
		return fail(err)
	}
	defer sp.Close()
	st := sp.Stats()
	log.Info("agent running", "id", id.ID, "collector", collectors.String(), "spooled", st.Pending, "spool_max_bytes", *spoolMax,
		"lost_total", st.Lost.Total(), "version", version)
	d := &daemon.Daemon{Conn: conn, Identity: id, Spool: sp, Version: version, Log: log}
	if err := d.Run(ctx); err != nil {
		return fail(err)
	}
	return exitOK
}
