package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
)

// TestServeReadsFromAReplica: serve with --read-database-url answers the
// dataset from a real standby, as GET /api/v1/info says, with its lag,
// which /metrics exports too; it refreshes the rollups on the database.
func TestServeReadsFromAReplica(t *testing.T) {
	url, st := openStore(t)
	datasettest.NewWorld().Seed(t, st)
	standby := storetest.Standby(t, url)
	c, addr := startCollectorWith(t, t.TempDir(), []string{"--database-url", url, "--read-database-url", standby})

	var info struct {
		ReadFromReplica bool    `json:"read_from_replica"`
		ReplicaLag      *string `json:"replica_lag"`
	}
	if err := json.Unmarshal(httpGet(t, "http://"+addr+"/api/v1/info"), &info); err != nil {
		t.Fatal(err)
	}
	if !info.ReadFromReplica || info.ReplicaLag == nil {
		t.Fatalf("/api/v1/info: read_from_replica %v, replica_lag %v; want true and a lag", info.ReadFromReplica, info.ReplicaLag)
	}
	if lag, err := time.ParseDuration(*info.ReplicaLag); err != nil || lag < 0 || lag > time.Minute {
		t.Errorf("/api/v1/info: replica_lag %q (%v); want a duration under a minute", *info.ReplicaLag, err)
	}

	// The refresher writes to the database, which the standby could not
	// take.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var refreshed bool
		if err := st.Pool.QueryRow(context.Background(), "SELECT refreshed_at IS NOT NULL FROM agg_state").Scan(&refreshed); err != nil {
			t.Fatal(err)
		}
		if refreshed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector did not refresh the rollups on the database within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	metrics := metricValues(t, httpGet(t, "http://"+addr+"/metrics"))
	if lag, ok := metrics["op25b_read_replica_lag_seconds"]; !ok || math.IsNaN(lag) || lag < 0 || lag > 60 {
		t.Errorf("op25b_read_replica_lag_seconds = %v (exported %v); want seconds under a minute", lag, ok)
	}
	if f := metrics["op25b_dataset_refresh_failures_total"]; f != 0 {
		t.Errorf("op25b_dataset_refresh_failures_total = %v; want 0", f)
	}
	if err := c.stop(syscall.SIGTERM); err != nil {
		t.Errorf("the collector, stopped with SIGTERM: %v; want a clean exit", err)
	}
}

// TestServeRefusesABadReadURL: a --read-database-url that is no URL stops
// serve at start, naming the flag.
func TestServeRefusesABadReadURL(t *testing.T) {
	url, _ := openStore(t)
	err := serve([]string{"--database-url", url, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--log-level", "error", "--read-database-url", "postgres://op25b@127.0.0.1:port/op25b"})
	if err == nil || !strings.Contains(err.Error(), "--read-database-url") {
		t.Errorf("serve with a bad --read-database-url: %v; want an error naming the flag", err)
	}
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v: %s", url, resp.StatusCode, err, b)
	}
	return b
}

// metricValues reads the unlabelled series of a Prometheus text exposition.
func metricValues(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(text)))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric %s: %v", name, err)
		}
		out[name] = v
	}
	return out
}

// TestReplicaWatch: the lag gauge holds the standby's lag, and NaN when
// the read database is no standby or is unreachable; each state is logged
// once, when it begins.
func TestReplicaWatch(t *testing.T) {
	ctx := context.Background()
	url, st := openStore(t)
	ds, err := dataset.New(st.Pool, dataset.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(url string) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	for _, tc := range []struct {
		name, url string
		lagKnown  bool
		log       string
	}{
		{"standby", storetest.Standby(t, url), true, "the dataset is read from a streaming replica"},
		{"the primary", url, false, "names no standby in recovery"},
		{"nothing", "postgres://op25b@" + freeAddr(t) + "/op25b?connect_timeout=5", false, "is unreachable"},
	} {
		logged.Reset()
		w := &replicaWatch{ds: ds.WithReplica(pool(tc.url)), log: log, lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lag"})}
		w.check(ctx)
		w.check(ctx)
		if lag := testutil.ToFloat64(w.lag); math.IsNaN(lag) == tc.lagKnown || tc.lagKnown && (lag < 0 || lag > 60) {
			t.Errorf("reading from %s: the lag gauge is %v; want seconds under a minute: %v", tc.name, lag, tc.lagKnown)
		}
		if n := strings.Count(logged.String(), tc.log); n != 1 {
			t.Errorf("reading from %s, checked twice: logged %q %d times; want once:\n%s", tc.name, tc.log, n, logged.String())
		}
	}
}
