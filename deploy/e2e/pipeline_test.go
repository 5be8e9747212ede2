package e2e_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/agent/daemon"
	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/localca"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// produce appends n results to sp as a round would, and returns their ids.
func produce(t *testing.T, sp *spool.Spool, agentID string, n int) []string {
	t.Helper()
	var ids []string
	var recs []spool.Record
	for i := 0; i < n; i++ {
		at := time.Now()
		pr := &op25bv1.ProbeResult{ResultId: uuidv7.New(at), AgentId: agentID, RefmtaId: "refmta-x", Port: 25,
			Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT,
			StartedAt: timestamppb.New(at), Failure: "timeout"}
		b, _ := proto.Marshal(pr)
		recs = append(recs, spool.Record{ID: pr.ResultId, Payload: b})
		ids = append(ids, pr.ResultId)
		if len(recs) == 500 {
			if err := sp.AppendBatch(recs); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if err := sp.AppendBatch(recs); err != nil {
		t.Fatal(err)
	}
	return ids
}

// stored counts the results and distinct result ids in the database.
func stored(t *testing.T, st *store.Store) (rows, distinct int) {
	t.Helper()
	err := st.Pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT result_id) FROM results").Scan(&rows, &distinct)
	if err != nil {
		return -1, -1
	}
	return rows, distinct
}

// missing counts the results of ids that are not stored.
func missing(t *testing.T, st *store.Store, ids []string) int {
	t.Helper()
	var n int
	if err := st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM unnest($1::uuid[]) id WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.result_id = id)", ids).Scan(&n); err != nil {
		t.Fatalf("counting the produced results that are not stored: %v", err)
	}
	return n
}

// agent enrolls an agent with token at the collectors addrs, as
// op25b-agent run does, and returns its daemon (not running) and spool.
func agent(t *testing.T, addrs []string, caFile, token string) (*daemon.Daemon, *spool.Spool) {
	t.Helper()
	conn, err := collectorclient.Dial(addrs, caFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := collectorclient.Ensure(ctx, conn, state, token, op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, "e2e", "test")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(state, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return &daemon.Daemon{Conn: conn, Identity: id, Spool: sp, Version: "test", Log: slog.New(slog.DiscardHandler),
		Batch: 100, RetryMax: 2 * time.Second, ScheduleEvery: time.Second}, sp
}

// startCollector starts `bin serve --listen addr` with args, waits until
// it listens, and kills it when the test ends if it still runs.
func startCollector(t *testing.T, bin, addr string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.WaitFor(t, "the collector at "+addr+" to listen", 30*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

func TestCollectorKilledMidStream(t *testing.T) {
	bin := filepath.Join(buildCommands(t, "collector/cmd/op25b-collector"), "op25b-collector")
	url := storetest.URL(t)
	st, err := store.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	addr := freeAddr(t)
	dataDir := t.TempDir()
	start := func() *exec.Cmd {
		return startCollector(t, bin, addr, "--data-dir", dataDir, "--database-url", url,
			"--http-listen", "127.0.0.1:0", "--rate", "10000", "--burst", "10000", "--log-level", "warn")
	}
	first := start()
	as := &auth.Service{Pool: st.Pool, Now: time.Now}
	_, token, err := as.CreateToken(context.Background(), "e2e", auth.Agent, time.Now().Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	d, sp := agent(t, []string{addr}, filepath.Join(dataDir, "tls", localca.CACert), token)
	const n = 20000
	ids := produce(t, sp, d.Identity.ID, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	testenv.WaitFor(t, "a third of the results stored", time.Minute, func() bool { r, _ := stored(t, st); return r >= n/3 })
	first.Process.Kill() // SIGKILL, mid-stream
	first.Wait()
	r, _ := stored(t, st)
	t.Logf("collector killed with %d of %d results stored", r, n)
	if r >= n {
		t.Fatalf("all results were stored before the kill; the test proves nothing")
	}
	start()
	testenv.WaitFor(t, "every result stored", 2*time.Minute, func() bool { return sp.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	rows, distinct := stored(t, st)
	if rows != n || distinct != n {
		t.Errorf("stored %d rows, %d distinct; want each of the %d results exactly once", rows, distinct, n)
	}
	if n := missing(t, st, ids); n != 0 {
		t.Errorf("%d produced results are not stored", n)
	}
}

// TestPostgresDownFor60s: the agent goes on measuring and keeps every
// result spooled through 60 s of its own time with PostgreSQL stopped,
// retrying all along, and delivers each result exactly once after
// PostgreSQL is back; in the next outage it retries at once again. The agent's clock between delivery attempts runs 20
// times faster than the wall clock, so the test takes seconds.
func TestPostgresDownFor60s(t *testing.T) {
	cluster := storetest.Cluster(t)
	if cluster == nil {
		testenv.Unavailable(t, "OP25B_TEST_DATABASE_URL names an external server, which this test cannot stop")
	}
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{})
	d, sp := agent(t, []string{c.Addr}, c.CAFile, c.Token(t, auth.Agent, 1))
	clock := &fastClock{speedup: 20}
	d.RetryAfter = clock.After
	produce(t, sp, d.Identity.ID, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.WaitFor(t, "the first results delivered", time.Minute, func() bool { return sp.Len() == 0 })

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	// The agent goes on measuring while the database is away.
	produce(t, sp, d.Identity.ID, 2000)
	waitedBefore, retriesBefore := clock.Waited()
	testenv.WaitFor(t, "60 s of the agent's time", time.Minute, func() bool { w, _ := clock.Waited(); return w-waitedBefore >= 60*time.Second })
	if got := sp.Len(); got != 2000 {
		t.Errorf("spooled while PostgreSQL was down: %d; want 2000 (nothing acknowledged)", got)
	}
	_, n := clock.Waited()
	t.Logf("%d delivery attempts failed over 60 s of the agent's time", n-retriesBefore)
	if n-retriesBefore < 20 {
		t.Errorf("%d delivery attempts over 60 s of the agent's time with RetryMax 2 s; want it to keep retrying (20 or more)", n-retriesBefore)
	}
	if err := cluster.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the spool delivered after the outage", 2*time.Minute, func() bool { return sp.Len() == 0 })

	// A second outage starts from the shortest wait again: the delivery
	// after the first one reset the backoff, which had reached RetryMax.
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	_, retriesBefore = clock.Waited()
	produce(t, sp, d.Identity.ID, 10)
	testenv.WaitFor(t, "a failed delivery in the second outage", time.Minute, func() bool { _, n := clock.Waited(); return n > retriesBefore })
	if first := clock.Wait(retriesBefore); first >= time.Second {
		t.Errorf("first wait of the second outage: %v; want under the backoff's 1 s minimum (reset by the delivery before)", first)
	}
	if err := cluster.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the spool delivered after the second outage", 2*time.Minute, func() bool { return sp.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	rows, distinct := stored(t, c.Store)
	if rows != 3010 || distinct != 3010 {
		t.Errorf("stored %d rows, %d distinct; want 3010 exactly once", rows, distinct)
	}
}

// fastClock is a daemon's clock that runs speedup times faster than the
// wall clock, and sums the waits it was asked for.
type fastClock struct {
	speedup int
	mu      sync.Mutex
	waited  time.Duration
	waits   []time.Duration
}

func (c *fastClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waited += d
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return time.After(d / time.Duration(c.speedup))
}

// Waited returns the total of the waits and their number.
func (c *fastClock) Waited() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waited, len(c.waits)
}

// Wait returns the i-th wait asked for.
func (c *fastClock) Wait(i int) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waits[i]
}

func withBearer(ctx context.Context, cred string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cred)
}
