// Command dataset is the dataset benchmark of make bench: it loads a
// synthetic world of raw results into a private PostgreSQL, rebuilds the
// rollups, and measures the dataset API over real HTTP (the ASN table, ASN
// timelines, exports, daily archives, the incremental refresh), each next to the same
// answer computed by plain SQL over the raw results in the same run, whose
// agreement it checks. It prints `key value` lines on stdout for
// deploy/bench.sh and its progress on stderr.
//
//	go run ./deploy/bench/dataset --results 10000000 --asns 5000 --agents 20000 --days 30
//
// Without $DATABASE_URL it starts its own cluster (collector/pgcluster) in
// a temporary directory that it removes on exit; with it, it works in a
// fresh database on that server that it drops on exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/httpapi"
	"github.com/op25b/observatory/collector/pgcluster"
	"github.com/op25b/observatory/collector/store"
)

// settings are the benchmark cluster's: throwaway durability, memory for
// a 10M-row table on a small machine.
var settings = []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off", "shared_buffers=1GB",
	"work_mem=64MB", "maintenance_work_mem=512MB", "max_wal_size=8GB"}

// windowDays is the window every measured request asks for.
const windowDays = 30

type config struct {
	results             int64
	asns, agents, days  int
	requests, copyConns int
	seed                uint64
}

func main() {
	var c config
	flag.Int64Var(&c.results, "results", 10_000_000, "raw results to load")
	flag.IntVar(&c.asns, "asns", 5000, "ASNs in the world")
	flag.IntVar(&c.agents, "agents", 20000, "agents in the world (at least one per ASN)")
	flag.IntVar(&c.days, "days", 30, "days of results, ending today")
	flag.IntVar(&c.requests, "requests", 200, "timed requests per latency figure")
	flag.IntVar(&c.copyConns, "copy-conns", 2, "connections loading days in parallel")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the world")
	flag.Parse()
	if c.asns < 1 || c.agents < c.asns || c.days < 2 || c.results < int64(c.days) || c.requests < 1 || c.copyConns < 1 {
		fmt.Fprintln(os.Stderr, "dataset: want --asns >= 1, --agents >= --asns, --days >= 2, --results >= --days, --requests >= 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataset:", err)
		os.Exit(1)
	}
}

var began = time.Now()

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
}

// emit prints one figure for bench.sh.
func emit(k string, v any) {
	if f, ok := v.(float64); ok {
		v = fmt.Sprintf("%.2f", f)
		if math.Abs(f) >= 100 {
			v = fmt.Sprintf("%.0f", f)
		}
	}
	fmt.Printf("%s %v\n", k, v)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// database returns the URL of an empty database and what removes it.
func database(ctx context.Context) (string, func(), error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return "", nil, err
		}
		defer conn.Close(ctx)
		name := fmt.Sprintf("op25b_bench_%d", os.Getpid())
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			return "", nil, err
		}
		cfg := conn.Config()
		drop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if c, err := pgx.Connect(ctx, u); err == nil {
				c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				c.Close(ctx)
			}
		}
		logf("using $DATABASE_URL (its own settings), database %s", name)
		return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), drop, nil
	}
	dir, err := os.MkdirTemp("", "op25b-bench-dataset-")
	if err != nil {
		return "", nil, err
	}
	c, err := pgcluster.Start(ctx, filepath.Join(dir, "pg"), pgcluster.Options{Settings: settings})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	logf("private PostgreSQL in %s", dir)
	return c.URL(), func() { c.Stop(); os.RemoveAll(dir) }, nil
}

func run(ctx context.Context, c config) error {
	url, cleanup, err := database(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer cleanup()
	st, err := store.Open(ctx, url, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	pool := st.Pool

	// The world ends an hour before midnight: that hour is the refresh's.
	today := time.Date(2026, 3, 30, 0, 0, 0, 0, time.UTC)
	now := today.Add(23 * time.Hour)
	var simulated atomic.Int64 // the clock of the dataset and the API
	simulated.Store(now.UnixNano())
	clock := func() time.Time { return time.Unix(0, simulated.Load()).UTC() }
	w := newWorld(c.seed, c.results, c.asns, c.agents, c.days, now)
	v4, v6 := w.prefixes()
	agents6 := 0
	for _, a := range w.agents {
		if len(a.families) == 2 {
			agents6++
		}
	}
	maxAgents := 0
	for _, a := range w.asns {
		maxAgents = max(maxAgents, len(a.agents))
	}
	emit("world_results", c.results)
	emit("world_asns", c.asns)
	emit("world_agents", c.agents)
	emit("world_agents_ipv6", agents6)
	emit("world_days", c.days)
	emit("world_prefixes_ipv4", v4)
	emit("world_prefixes_ipv6", v6)
	emit("world_largest_asn_agents", maxAgents)
	var names []store.ASHolder
	for _, a := range w.asns {
		names = append(names, store.ASHolder{ASN: a.asn, Name: a.name, Country: a.country})
	}
	if err := st.UpsertASNames(ctx, names); err != nil {
		return err
	}

	// Load.
	if err := load(ctx, pool, w, c.copyConns); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE results"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	emit("vacuum_s", time.Since(t0).Seconds())
	ds, err := dataset.New(pool, dataset.Config{}, clock)
	if err != nil {
		return err
	}
	logf("rebuilding the rollups from %d results", c.results)
	rs, err := ds.Rebuild(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	emit("rebuild_s", rs.Took.Seconds())
	emit("rebuild_keys", rs.Keys)
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}

	// The API over real HTTP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: httpapi.New(ds, httpapi.Options{Now: clock,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})}
	go srv.Serve(ln)
	defer srv.Close()
	api := &client{base: "http://" + ln.Addr().String(), http: &http.Client{Timeout: 10 * time.Minute}}
	b := &bench{c: c, w: w, pool: pool, api: api, now: now}
	b.setNow = func(t time.Time) { b.now = t; simulated.Store(t.UnixNano()) }
	for _, step := range []func(context.Context) error{b.asnTable, b.timelines, b.exports} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if err := b.archives(ctx, st, ds); err != nil {
		return err
	}
	if err := b.refresh(ctx, st, ds); err != nil {
		return err
	}
	// The footprint of the world (and its hour), before the steady
	// ingest adds 2 million results of another day.
	if err := sizes(ctx, pool); err != nil {
		return err
	}
	r, err := newRefresher(ctx, url, clock)
	if err != nil {
		return err
	}
	defer r.pool.Close()
	if err := b.steady(ctx, st, r); err != nil {
		return err
	}
	// The windows and timelines the steady ingest's refreshes reached,
	// against plain SQL.
	if err := b.checkSample(ctx, "steady_equal"); err != nil {
		return err
	}
	emit("total_s", time.Since(began).Seconds())
	return nil
}

// load creates the day partitions the way the store names them, then
// COPYs each day's results straight into the partitioned table.
func load(ctx context.Context, pool *pgxpool.Pool, w *world, conns int) error {
	for d := range w.days {
		from := w.start.Add(time.Duration(d) * dataset.Day)
		sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF results FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{"results_" + from.Format("20060102")}.Sanitize(), from.Format(time.RFC3339), from.Add(dataset.Day).Format(time.RFC3339))
		if _, err := pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("partition: %w", err)
		}
	}
	logf("loading %d results over %d days with %d connections", w.n, w.days, conns)
	days := make(chan []store.Result, 1)
	errs := make(chan error, conns)
	t0 := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range conns {
		go func() {
			var err error
			for rs := range days {
				if err == nil {
					_, err = pool.CopyFrom(ctx, pgx.Identifier{"results"}, resultColumns, &copySource{rs: rs})
					if err != nil {
						cancel()
					}
				}
			}
			errs <- err
		}()
	}
	q := &quota{limit: w.n}
	for d := range w.days {
		from := w.start.Add(time.Duration(d) * dataset.Day)
		to := from.Add(dataset.Day)
		if to.After(w.now) {
			to = w.now
		}
		rs := w.results(from, to, q)
		select {
		case days <- rs:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		logf("  day %d/%d: %d results queued", d+1, w.days, len(rs))
	}
	close(days)
	var err error
	for range conns {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM results").Scan(&n); err != nil {
		return err
	}
	if n != w.n {
		return fmt.Errorf("load: %d results stored, want %d", n, w.n)
	}
	took := time.Since(t0)
	emit("load_s", took.Seconds())
	emit("load_rows_per_s", int64(math.Round(float64(n)/took.Seconds())))
	return nil
}

// sizes reports the disk footprint of the raw results and the rollups.
func sizes(ctx context.Context, pool *pgxpool.Pool) error {
	var results, rollups, tallies int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('results')`).Scan(&results); err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, `SELECT sum(pg_total_relation_size(t)), sum(pg_total_relation_size(t)) FILTER (WHERE t = 'agg_agent_day'::regclass)
		FROM unnest('{agg_agent_day,agg_evidence,agg_dirty,agg_delta,agg_agent_window,agg_port,agg_class,policy_changes,agg_state}'::regclass[]) AS t`).Scan(&rollups, &tallies); err != nil {
		return err
	}
	emit("results_mib", float64(results)/(1<<20))
	emit("rollup_mib", float64(rollups)/(1<<20))
	emit("tally_mib", float64(tallies)/(1<<20))
	return nil
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(0, int(math.Ceil(p*float64(len(s))))-1)]
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }
