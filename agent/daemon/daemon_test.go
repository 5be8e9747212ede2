package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/op25b/observatory/agent/daemon"
	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/testenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// setup starts a collector whose schedule names a real reference MTA on
// loopback, and an enrolled agent daemon with its spool, opened with opts
// in spoolDir.
func setup(t *testing.T, interval time.Duration, opts spool.Options) (c *collectortest.Collector, d *daemon.Daemon, sp *spool.Spool, spoolDir string) {
	t.Helper()
	c = collectortest.Start(t, api.Options{})
	ref := refmtatest.Start(t, "127.0.0.1", nil)
	// Enrolled, so that the collector verifies its statements.
	refID, _, err := c.Auth.Enroll(context.Background(), c.Token(t, auth.RefMTA, 1), auth.RefMTA, ref.Public(), "ref", "test")
	if err != nil {
		t.Fatal(err)
	}
	c.SetSchedule(&op25bv1.Schedule{
		ReferenceMtas: []*op25bv1.ReferenceMTA{{Id: refID, PublicKey: ref.Public(), Addresses: []string{"127.0.0.1"},
			Ports:            []uint32{uint32(ref.Ports[smtpd.SMTP]), uint32(ref.Ports[smtpd.Submission]), uint32(ref.Ports[smtpd.SMTPS])},
			ImplicitTlsPorts: []uint32{uint32(ref.Ports[smtpd.SMTPS])}, ControlPort: uint32(ref.Ports[smtpd.Control])}},
		Interval: durationpb.New(interval), ProbeTimeout: durationpb.New(3 * time.Second)})
	conn := c.Dial(t)
	state := t.TempDir()
	id, err := collectorclient.Ensure(context.Background(), conn, state, c.Token(t, auth.Agent, 1), op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, "test", "test")
	if err != nil {
		t.Fatal(err)
	}
	spoolDir = filepath.Join(state, "spool")
	sp, err = spool.Open(spoolDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return c, &daemon.Daemon{Conn: conn, Identity: id, Spool: sp, Version: "test", Log: slog.New(slog.DiscardHandler),
		ScheduleEvery: 100 * time.Millisecond, Drain: 5 * time.Second}, sp, spoolDir
}

func TestRoundsAreDeliveredOnce(t *testing.T) {
	c, d, sp, _ := setup(t, 300*time.Millisecond, spool.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.WaitFor(t, "3 rounds stored", 30*time.Second, func() bool { return c.Count(t, "results") >= 9 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if n := sp.Len(); n != 0 {
		t.Errorf("%d results still spooled after a clean stop; want 0", n)
	}
	var results, distinct, open, attributed int
	if err := c.Store.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT result_id), count(*) FILTER (WHERE verdict = 1),
		count(*) FILTER (WHERE egress_source = 2 AND host(egress) = '127.0.0.1') FROM results`).Scan(&results, &distinct, &open, &attributed); err != nil {
		t.Fatal(err)
	}
	if results != distinct || results%3 != 0 || open != results {
		t.Errorf("stored %d results (%d distinct, %d OPEN); want whole rounds of 3, each once, all OPEN", results, distinct, open)
	}
	if attributed != results {
		t.Errorf("%d of %d results have their egress from the verified control statement; want all", attributed, results)
	}
}

func TestRevokedAgentStops(t *testing.T) {
	c, d, _, _ := setup(t, time.Hour, spool.Options{})
	if err := c.Auth.Revoke(context.Background(), d.Identity.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := d.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Run of a revoked agent = %v; want a refusal", err)
	}
}

func TestOffsetAndNextRound(t *testing.T) {
	j := 5 * time.Minute
	a, b := daemon.Offset("agent-a", j), daemon.Offset("agent-b", j)
	if a == b || a < 0 || a >= j || daemon.Offset("agent-a", j) != a {
		t.Errorf("Offset: a=%v b=%v; want distinct, stable, within [0, %v)", a, b, j)
	}
	now := time.Date(2026, 11, 23, 10, 7, 0, 0, time.UTC)
	got := daemon.NextRound(now, 15*time.Minute, 2*time.Minute)
	if want := time.Date(2026, 11, 23, 10, 17, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("NextRound(10:07, 15m, +2m) = %v; want %v", got, want)
	}
	if got := daemon.NextRound(time.Date(2026, 11, 23, 10, 17, 0, 0, time.UTC), 15*time.Minute, 2*time.Minute); !got.Equal(time.Date(2026, 11, 23, 10, 32, 0, 0, time.UTC)) {
		t.Errorf("NextRound on a slot = %v; want the next slot", got)
	}
}

func TestRoundOffset(t *testing.T) {
	sch := &op25bv1.Schedule{Interval: durationpb.New(15 * time.Minute), Jitter: durationpb.New(5 * time.Minute)}
	if got, want := daemon.RoundOffset(sch, "agent-a"), daemon.Offset("agent-a", 5*time.Minute); got != want {
		t.Errorf("RoundOffset without the collector's offset = %v; want the agent's own %v", got, want)
	}
	sch.Offset = durationpb.New(11 * time.Minute)
	if got := daemon.RoundOffset(sch, "agent-a"); got != 11*time.Minute {
		t.Errorf("RoundOffset with the collector's offset = %v; want 11m", got)
	}
	// An offset outside the jitter window is kept: the collector spreads
	// over the whole interval.
	if got := daemon.NextRound(time.Date(2026, 11, 23, 10, 7, 0, 0, time.UTC), 15*time.Minute, daemon.RoundOffset(sch, "agent-a")); !got.Equal(time.Date(2026, 11, 23, 10, 11, 0, 0, time.UTC)) {
		t.Errorf("next round at %v; want 10:11", got)
	}
}

func TestBatchEndKeepsRoundsWhole(t *testing.T) {
	if daemon.MaxBatch != api.MaxBatch {
		t.Fatalf("daemon.MaxBatch = %d; the collector accepts %d", daemon.MaxBatch, api.MaxBatch)
	}
	rounds := func(spec ...any) []string { // pairs of round id and count
		var out []string
		for i := 0; i < len(spec); i += 2 {
			for range spec[i+1].(int) {
				out = append(out, spec[i].(string))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		rounds []string
		size   int
		want   int
	}{
		{"fewer than a batch", rounds("a", 6), 10, 6},
		{"the cut falls between rounds", rounds("a", 6, "b", 6), 6, 6},
		{"a round straddles the cut", rounds("a", 6, "b", 6, "c", 6), 8, 12},
		{"results without a round", rounds("", 12), 8, 8},
		{"a round of a single result", rounds("a", 8, "b", 1, "c", 4), 9, 9},
		{"never past MaxBatch", rounds("a", 1500), 200, daemon.MaxBatch},
		{"empty", nil, 200, 0},
	} {
		if got := daemon.BatchEnd(tc.rounds, tc.size); got != tc.want {
			t.Errorf("%s: BatchEnd(%d results, %d) = %d; want %d", tc.name, len(tc.rounds), tc.size, got, tc.want)
		}
	}
}

// run runs d until stop says so, and returns once it has stopped.
func run(t *testing.T, d *daemon.Daemon, what string, limit time.Duration, stop func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.WaitFor(t, what, limit, stop)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

// TestLossReportedWithNothingToUpload: a spool too small for any result
// drops every round and never has anything to upload; the schedule poll
// reports the drops all the same. After a restart with a spool that works,
// the count goes on from where it was, and the collector's total is the
// agent's, not counted twice.
func TestLossReportedWithNothingToUpload(t *testing.T) {
	c, d, sp, dir := setup(t, 200*time.Millisecond, spool.Options{MaxBytes: 100})
	run(t, d, "a poll reporting 2 rounds dropped", 30*time.Second, func() bool { return c.Lost(t, d.Identity.ID).Full >= 6 })
	st := sp.Stats()
	if st.Pending != 0 || st.Lost.Full < 6 || c.Count(t, "results") != 0 {
		t.Fatalf("spool %+v, %d results stored; want every result dropped and counted, none stored", st, c.Count(t, "results"))
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if got := sp.Stats().Lost; got.Full != st.Lost.Full {
		t.Fatalf("after a restart the spool counts %+v lost; want %+v, as before", got, st.Lost)
	}
	d = &daemon.Daemon{Conn: d.Conn, Identity: d.Identity, Spool: sp, Version: d.Version, Log: d.Log,
		ScheduleEvery: d.ScheduleEvery, Drain: d.Drain}
	run(t, d, "a round stored after the restart", 30*time.Second, func() bool { return c.Count(t, "results") >= 3 })
	if got, want := c.Lost(t, d.Identity.ID), sp.Stats().Lost; got.Full != want.Full || got.Total() != want.Total() {
		t.Errorf("the collector holds %+v lost; want the agent's own count %+v", got, want)
	}
}

// TestSmallSpoolDeliversEveryRound is the daemon's side of the spool's
// regression test: with --spool-max-bytes 20,000, under the 4 MiB segment
// size, rounds went on being dropped once 20,000 bytes had been written.
func TestSmallSpoolDeliversEveryRound(t *testing.T) {
	const maxBytes = 20_000
	c, d, sp, _ := setup(t, 100*time.Millisecond, spool.Options{MaxBytes: maxBytes})
	run(t, d, "20 rounds stored or one lost", 60*time.Second, func() bool {
		return c.Count(t, "results") >= 60 || sp.Stats().Lost.Total() > 0
	})
	if st := sp.Stats(); st.Lost.Total() != 0 || st.Bytes > maxBytes {
		t.Errorf("spool %+v after 20 rounds; want nothing lost, within %d bytes", st, maxBytes)
	}
}

// TestRoundSpoolCost checks what docs/volunteer.md says a round costs in
// the spool: at most 7.5 KB for one reference MTA's three ports in one
// address family, all OPEN (the largest results: they carry the signed
// statement and the TLS details).
func TestRoundSpoolCost(t *testing.T) {
	// One round: the next is a day away.
	c, d, sp, _ := setup(t, 24*time.Hour, spool.Options{})
	run(t, d, "the first round stored", 30*time.Second, func() bool { return c.Count(t, "results") == 3 })
	// The segment holding the round is not deleted until the next.
	st := sp.Stats()
	t.Logf("a round of 3 OPEN results took %d bytes of spool", st.Bytes)
	if st.Bytes == 0 || st.Bytes > 7500 {
		t.Errorf("a round of 3 OPEN results took %d bytes of spool; docs/volunteer.md says at most 7.5 KB", st.Bytes)
	}
}

// TestNoStreamBetweenRounds: once a round is delivered the agent ends its
// upload stream, rather than holding it until the next round (issue 12: a
// held stream is most of what an agent costs a collector), and opens one
// again for the next round.
func TestNoStreamBetweenRounds(t *testing.T) {
	c, d, _, _ := setup(t, 2*time.Second, spool.Options{})
	d.ScheduleEvery = time.Hour // only the fetches before rounds
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for round := 1; round <= 2; round++ {
		testenv.WaitFor(t, fmt.Sprintf("round %d stored", round), 30*time.Second, func() bool { return c.Count(t, "results") >= 3*round })
		testenv.WaitFor(t, fmt.Sprintf("no stream open after round %d", round), 10*time.Second, func() bool {
			return c.Gauge(t, "op25b_agents_connected") == 0
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
