package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/uuidv7"
)

// designRate is the design point's ingest, results/s (docs/scaling.md).
const designRate = 2000

// windowsEvery and refreshEvery are the collector's default cadences.
const (
	refreshEvery = time.Minute
	windowsEvery = 15 * time.Minute
)

// refresher runs the dataset's refreshes on one connection, so that the
// CPU time of its PostgreSQL backend can be read from /proc: the server
// is the benchmark's own, on this machine.
type refresher struct {
	ds   *dataset.Dataset
	pool *pgxpool.Pool
	pid  int
}

func newRefresher(ctx context.Context, url string, clock func() time.Time) (*refresher, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = 1, 1
	cfg.MaxConnLifetime, cfg.MaxConnIdleTime = 24*time.Hour, 24*time.Hour
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &refresher{pool: pool}
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&r.pid); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := backendCPU(r.pid); err != nil {
		pool.Close()
		return nil, fmt.Errorf("the refresh's PostgreSQL backend (pid %d) is not on this machine: %w", r.pid, err)
	}
	if r.ds, err = dataset.New(pool, dataset.Config{}, clock); err != nil {
		pool.Close()
		return nil, err
	}
	return r, nil
}

// cost is what one refresh took: wall time and CPU time, its PostgreSQL
// backend's and this process's.
type cost struct {
	wall, cpu time.Duration
	st        dataset.RefreshStats
}

// run times one refresh.
func (r *refresher) run(ctx context.Context, f func(context.Context) (dataset.RefreshStats, error)) (cost, error) {
	b0, err := backendCPU(r.pid)
	if err != nil {
		return cost{}, err
	}
	s0 := selfCPU()
	t0 := time.Now()
	st, err := f(ctx)
	if err != nil {
		return cost{}, err
	}
	if st.Skipped {
		return cost{}, fmt.Errorf("a refresh skipped: nothing else refreshes here")
	}
	wall := time.Since(t0)
	b1, err := backendCPU(r.pid)
	if err != nil {
		return cost{}, err
	}
	var pid int
	if err := r.pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil || pid != r.pid {
		return cost{}, fmt.Errorf("the refresh's connection changed (backend %d, was %d): %v", pid, r.pid, err)
	}
	return cost{wall: wall, cpu: b1 - b0 + selfCPU() - s0, st: st}, nil
}

// backendCPU is the user and system CPU time of process pid.
func backendCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command, which is in parentheses: state is the
	// first, utime the 12th, stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// refmtas are the reference MTAs of a round at the design point.
var refmtas = []string{"refmta-bench-a", "refmta-bench-b", "refmta-bench-c"}

// rounds makes results measured in [from, from+span) at the design rate,
// as rounds of the agents in order, cycling: each round is one result per
// family, port and reference MTA of the agent, 18 for an agent on both
// families, as at the design point (docs/scaling.md).
type rounds struct {
	w      *world
	agents []*agentInfo
	next   int
	day    int
}

func (g *rounds) make(from time.Time, span time.Duration) []store.Result {
	n := int(designRate * span.Seconds())
	out := make([]store.Result, 0, n+18)
	for len(out) < n {
		ag := g.agents[g.next%len(g.agents)]
		g.next++
		at := from.Add(time.Duration(g.w.rng.Int64N(int64(span - 2*time.Second)))).Truncate(time.Millisecond)
		roundID := uuidv7.New(at)
		step := 0
		for _, fam := range ag.families {
			for _, port := range ports {
				for _, m := range refmtas {
					step++
					res := g.w.result(ag, g.day, fam, port, at.Add(time.Duration(step)*137*time.Millisecond), roundID)
					res.RefMTA = m
					out = append(out, res)
				}
			}
		}
	}
	return out
}

// ingest stores rs through the store's ingest path, as 8 agents sending
// batches of 200 would.
func ingest(ctx context.Context, st *store.Store, rs []store.Result) error {
	batches := make(chan []store.Result)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for b := range batches {
				if _, err := st.InsertResults(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := 0; i < len(rs); i += 200 {
		select {
		case batches <- rs[i:min(i+200, len(rs))]:
		case err := <-errs:
			close(batches)
			wg.Wait()
			return err
		}
	}
	close(batches)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// steady measures what the refresh costs under steady ingest at the
// design rate, in simulated time: from the next UTC midnight, each minute's
// results (designRate a second, rounds of the world's agents) go through
// the ingest path, then the daily points are refreshed, as the collector
// does every --refresh-every; the rolling windows are refreshed after
// windowsEvery of them, as every --windows-every. The refresh's work
// depends on what was ingested since the last, not on when, so the
// simulated minutes take less than a minute each. It then measures the
// growth with the ASNs that took results: one minute's results at the
// same rate from the agents of fewer ASNs. It leaves the rollups current.
func (b *bench) steady(ctx context.Context, st *store.Store, r *refresher) error {
	midnight := dataset.Today(b.now).Add(dataset.Day)
	b.setNow(midnight.Add(30 * time.Second))
	// The first refresh of the day moves every window on: once a day.
	if _, err := r.run(ctx, r.ds.RefreshDays); err != nil {
		return err
	}
	roll, err := r.run(ctx, r.ds.RefreshWindows)
	if err != nil {
		return err
	}
	if !roll.st.AllWindows {
		return fmt.Errorf("steady: the first refresh of the windows after midnight did not move them on")
	}
	quietDays, err := r.run(ctx, r.ds.RefreshDays)
	if err != nil {
		return err
	}
	quietWindows, err := r.run(ctx, r.ds.RefreshWindows)
	if err != nil {
		return err
	}
	if quietDays.st.Days != 0 || quietWindows.st.Keys != 0 {
		return fmt.Errorf("steady: a refresh with nothing new recomputed %d days and %d windows' keys", quietDays.st.Days, quietWindows.st.Keys)
	}
	emit("steady_roll_cpu_s", roll.cpu.Seconds())
	emit("steady_roll_wall_s", roll.wall.Seconds())
	emit("steady_quiet_cpu_ms", ms(quietDays.cpu+quietWindows.cpu))

	agents := slices.Clone(b.w.agents)
	b.w.rng.Shuffle(len(agents), func(i, j int) { agents[i], agents[j] = agents[j], agents[i] })
	g := &rounds{w: b.w, agents: agents, day: b.w.days}
	minutes := int(windowsEvery / refreshEvery)
	logf("steady: %d minutes of ingest at %d results/s, refreshing the daily points every minute and the windows after the %dth", minutes, designRate, minutes)
	var days []cost
	var results int
	var ingestTook time.Duration
	for m := range minutes {
		from := midnight.Add(time.Minute + time.Duration(m)*refreshEvery)
		rs := g.make(from, refreshEvery)
		t0 := time.Now()
		if err := ingest(ctx, st, rs); err != nil {
			return err
		}
		ingestTook += time.Since(t0)
		results += len(rs)
		b.setNow(from.Add(refreshEvery))
		c, err := r.run(ctx, r.ds.RefreshDays)
		if err != nil {
			return err
		}
		days = append(days, c)
		logf("  minute %d: %d results, daily points of %d (ASN, family, day) keys in %s (CPU %s)", m+1, len(rs), c.st.Days, c.wall.Round(time.Millisecond), c.cpu.Round(time.Millisecond))
	}
	win, err := r.run(ctx, r.ds.RefreshWindows)
	if err != nil {
		return err
	}
	if win.st.AllWindows {
		return fmt.Errorf("steady: the windows' refresh recomputed every window: want only what changed")
	}
	logf("  windows: %d deltas, %d keys in %s (CPU %s)", win.st.Deltas, win.st.Keys, win.wall.Round(time.Millisecond), win.cpu.Round(time.Millisecond))
	var daysCPU, daysWall time.Duration
	cpus := make([]time.Duration, len(days))
	for i, c := range days {
		daysCPU += c.cpu
		daysWall += c.wall
		cpus[i] = c.cpu
	}
	span := windowsEvery.Seconds()
	emit("steady_minutes", minutes)
	emit("steady_results", results)
	emit("steady_ingest_rows_per_s", int64(math.Round(float64(results)/ingestTook.Seconds())))
	emit("steady_days_keys", days[len(days)-1].st.Days)
	emit("steady_days_cpu_p50_ms", ms(median(cpus)))
	emit("steady_days_cpu_max_ms", ms(slices.Max(cpus)))
	emit("steady_windows_cpu_ms", ms(win.cpu))
	emit("steady_windows_wall_ms", ms(win.wall))
	emit("steady_windows_deltas", win.st.Deltas)
	emit("steady_windows_keys", win.st.Keys)
	// The share of one core: what the refreshes of the 15 minutes took,
	// with the day's roll spread over its day, over the 15 minutes.
	share := (daysCPU+win.cpu).Seconds()/span + roll.cpu.Seconds()/dataset.Day.Seconds()
	wallShare := (daysWall+win.wall).Seconds()/span + roll.wall.Seconds()/dataset.Day.Seconds()
	emit("steady_cpu_share_pct", 100*share)
	emit("steady_wall_share_pct", 100*wallShare)

	// Growth with the ASNs that took results: a minute at the same rate
	// from the agents of k ASNs, chosen at random among all.
	asns := slices.Clone(b.w.asns)
	b.w.rng.Shuffle(len(asns), func(i, j int) { asns[i], asns[j] = asns[j], asns[i] })
	now := midnight.Add(time.Minute + windowsEvery)
	var points [][2]float64
	var labels, costs, keys []string
	for _, k := range []int{len(asns) / 100, len(asns) / 10, len(asns)} {
		var sub []*agentInfo
		for _, a := range asns[:k] {
			for _, i := range a.agents {
				sub = append(sub, b.w.agents[i])
			}
		}
		g := &rounds{w: b.w, agents: sub, day: b.w.days}
		rs := g.make(now, refreshEvery)
		if err := ingest(ctx, st, rs); err != nil {
			return err
		}
		now = now.Add(refreshEvery)
		b.setNow(now)
		d, err := r.run(ctx, r.ds.RefreshDays)
		if err != nil {
			return err
		}
		w, err := r.run(ctx, r.ds.RefreshWindows)
		if err != nil {
			return err
		}
		logf("  %d ASNs, %d agents: daily points %s CPU (%d keys), windows %s CPU (%d keys)", k, len(sub), d.cpu.Round(time.Millisecond), d.st.Days, w.cpu.Round(time.Millisecond), w.st.Keys)
		points = append(points, [2]float64{float64(k), (d.cpu + w.cpu).Seconds()})
		labels = append(labels, strconv.Itoa(k))
		costs = append(costs, fmt.Sprintf("%.0f", ms(d.cpu+w.cpu)))
		keys = append(keys, strconv.Itoa(d.st.Days))
	}
	// One word each, as bench.sh reads the first after the key.
	emit("steady_growth_asns", strings.Join(labels, "/"))
	emit("steady_growth_keys", strings.Join(keys, "/"))
	emit("steady_growth_cpu_ms", strings.Join(costs, "/"))
	first, last := points[0], points[len(points)-1]
	emit("steady_asns_exponent", math.Log(last[1]/first[1])/math.Log(last[0]/first[0]))
	return nil
}
