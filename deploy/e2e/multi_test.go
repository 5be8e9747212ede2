package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/localca"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/testenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// replica is one `op25b-collector serve` of several sharing a database.
type replica struct {
	cmd  *exec.Cmd
	dial string // the address agents dial, by the name its certificate covers
	web  string // its HTTP base URL
}

// metric returns the value of the unlabelled metric name on r's /metrics.
func (r replica) metric(t *testing.T, name string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(httpGet(t, r.web+"/metrics")))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s/metrics: %s: %v", r.web, name, err)
			}
			return f
		}
	}
	t.Fatalf("%s/metrics has no %s", r.web, name)
	return 0
}

// TestFailoverBetweenCollectors is issue 12's kill test across two
// collectors sharing one PostgreSQL, with the real programs: collector A
// on its local CA with a certificate for 127.0.0.1; collector B, given a
// copy of A's CA as the operator guide says, with a certificate of its own
// for localhost; an agent (`op25b-agent run`) given both addresses in
// OP25B_COLLECTOR and 20,000 spooled results. The collector the agent
// streams to is killed with SIGKILL mid-stream and never restarted: the
// agent delivers the rest through the other, and every result is stored
// exactly once.
func TestFailoverBetweenCollectors(t *testing.T) {
	bin := buildCommands(t, "collector/cmd/op25b-collector", "agent/cmd/op25b-agent")
	url := storetest.URL(t)
	st, err := store.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	dirA, dirB := t.TempDir(), t.TempDir()
	start := func(dataDir, host string) replica {
		listen, web := freeAddr(t), freeAddr(t)
		_, port, _ := net.SplitHostPort(listen)
		cmd := startCollector(t, filepath.Join(bin, "op25b-collector"), listen, "--data-dir", dataDir, "--database-url", url,
			"--tls-hosts", host, "--http-listen", web, "--http-rate", "1000", "--http-burst", "1000",
			"--rate", "10000", "--burst", "10000", "--log-level", "warn")
		return replica{cmd: cmd, dial: net.JoinHostPort(host, port), web: "http://" + web}
	}
	a := start(dirA, "127.0.0.1")
	if err := os.CopyFS(filepath.Join(dirB, "tls"), os.DirFS(filepath.Join(dirA, "tls"))); err != nil {
		t.Fatal(err)
	}
	b := start(dirB, "localhost")
	ca := filepath.Join(dirA, "tls", localca.CACert)
	if got, err := os.ReadFile(filepath.Join(dirB, "tls", localca.ServerCert)); err != nil || bytes.Equal(got, mustRead(t, filepath.Join(dirA, "tls", localca.ServerCert))) {
		t.Fatalf("collector B serves A's certificate (%v); want one of its own for localhost", err)
	}

	// The agent enrolled earlier and spooled a backlog while away.
	as := &auth.Service{Pool: st.Pool, Now: time.Now}
	_, token, err := as.CreateToken(context.Background(), "e2e", auth.Agent, time.Now().Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	conn, err := collectorclient.Dial([]string{a.dial, b.dial}, ca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	id, err := collectorclient.Ensure(ctx, conn, state, token, op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, "e2e", "test")
	cancel()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(state, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	ids := produce(t, sp, id.ID, n)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	agent := exec.Command(filepath.Join(bin, "op25b-agent"), "run", "--state-dir", state, "--log-level", "info")
	agent.Env = append(os.Environ(), "OP25B_COLLECTOR="+a.dial+","+b.dial, "OP25B_COLLECTOR_CA="+ca)
	var agentLog bytes.Buffer
	agent.Stderr = &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { agent.Process.Kill(); agent.Wait() }()

	testenv.WaitFor(t, "a third of the results stored", time.Minute, func() bool { r, _ := stored(t, st); return r >= n/3 })
	// The agent holds its upload stream on one collector at a time: that
	// one is killed, the other must not have had it.
	streaming, other := a, b
	if b.metric(t, "op25b_agents_connected") == 1 {
		streaming, other = b, a
	}
	if got := streaming.metric(t, "op25b_agents_connected"); got != 1 {
		t.Fatalf("no collector holds the agent's upload stream (%s: %v)", streaming.dial, got)
	}
	if got := other.metric(t, "op25b_upload_batches_total"); got != 0 {
		t.Fatalf("collector %s took %v batches while %s held the stream; want one collector at a time", other.dial, got, streaming.dial)
	}
	streaming.cmd.Process.Kill() // SIGKILL, mid-stream
	streaming.cmd.Wait()
	r, _ := stored(t, st)
	t.Logf("collector %s killed with %d of %d results stored; %s takes over", streaming.dial, r, n, other.dial)
	if r >= n {
		t.Fatalf("all results were stored before the kill; the test proves nothing")
	}

	testenv.WaitFor(t, "every result stored", 2*time.Minute, func() bool { r, _ := stored(t, st); return r >= n })
	if got := other.metric(t, "op25b_upload_batches_total"); got == 0 {
		t.Errorf("collector %s took no batch; the results came another way", other.dial)
	}
	// SIGTERM: the agent drains and stops with nothing left in its spool.
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("agent: %v\n%s", err, agentLog.String())
	}
	if !strings.Contains(agentLog.String(), "undelivered=0") {
		t.Errorf("the agent did not stop with its spool delivered:\n%s", agentLog.String())
	}
	rows, distinct := stored(t, st)
	if rows != n || distinct != n {
		t.Errorf("stored %d rows, %d distinct; want each of the %d results exactly once", rows, distinct, n)
	}
	if n := missing(t, st, ids); n != 0 {
		t.Errorf("%d produced results are not stored", n)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEnrollWithFirstCollectorDown: a new agent given two collectors, the
// first of which is down (nothing listens on its address), enrolls with
// the second and delivers through it.
func TestEnrollWithFirstCollectorDown(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{})
	down := freeAddr(t)
	d, sp := agent(t, []string{down, c.Addr}, c.CAFile, c.Token(t, auth.Agent, 1))
	if n := c.Count(t, "principals"); n != 1 {
		t.Fatalf("%d principals enrolled; want the agent", n)
	}
	ids := produce(t, sp, d.Identity.ID, 500)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.WaitFor(t, "the results delivered", time.Minute, func() bool { return sp.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	if n := missing(t, c.Store, ids); n != 0 {
		t.Errorf("%d results are not stored", n)
	}
}
