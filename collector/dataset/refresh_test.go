package dataset_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
)

// TestQuietRefreshes: refreshes with nothing ingested since the last one
// (a quiet collector's ticks) succeed, recompute nothing and say the
// rollups are fresh; the first one after UTC midnight rolls every window
// without touching the timeline; a result that arrives after quiet ticks
// is taken in by exactly one refresh. The clock is the test's.
func TestQuietRefreshes(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	w := datasettest.NewWorld()
	w.Seed(t, s)
	now := datasettest.Now
	d, err := dataset.New(s.Pool, dataset.Config{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	state := func() (asOf, refreshed time.Time) {
		t.Helper()
		if err := s.Pool.QueryRow(ctx, "SELECT as_of, refreshed_at FROM agg_state").Scan(&asOf, &refreshed); err != nil {
			t.Fatal(err)
		}
		return asOf, refreshed
	}
	settled := snapshot(t, s)

	for i := range 30 {
		now = now.Add(10 * time.Second)
		st, err := d.Refresh(ctx)
		if err != nil {
			t.Fatalf("quiet refresh %d: %v", i, err)
		}
		if st.Keys != 0 || st.Days != 0 || st.AllWindows {
			t.Fatalf("quiet refresh %d recomputed %d keys, %d days, all windows %v; want nothing", i, st.Keys, st.Days, st.AllWindows)
		}
		if _, refreshed := state(); !refreshed.Equal(now) {
			t.Fatalf("quiet refresh %d: refreshed_at %s; want the refresh's time %s", i, refreshed, now)
		}
	}
	if got := snapshot(t, s); got != settled {
		t.Errorf("quiet refreshes changed the derived tables")
	}

	// UTC midnight with nothing ingested: the windows move on a day.
	now = dataset.Today(now).Add(dataset.Day + 5*time.Second)
	st, err := d.Refresh(ctx)
	if err != nil {
		t.Fatalf("first refresh of a new day: %v", err)
	}
	if !st.AllWindows || st.Days != 0 || st.Keys == 0 {
		t.Errorf("first refresh of a new day: %d keys, %d days, all windows %v; want every window and no timeline day", st.Keys, st.Days, st.AllWindows)
	}
	if asOf, refreshed := state(); !asOf.Equal(dataset.Today(now)) || !refreshed.Equal(now) {
		t.Errorf("after midnight: as_of %s, refreshed_at %s; want %s and %s", asOf, refreshed, dataset.Today(now), now)
	}
	rows, _ := s.Pool.Query(ctx, "SELECT DISTINCT day FROM agg_port WHERE window_days > 0")
	ends, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) != 1 || !ends[0].Equal(dataset.Today(now)) {
		t.Errorf("windows end on %v; want only the new day %s", ends, dataset.Today(now).Format(time.DateOnly))
	}
	if st, err := d.Refresh(ctx); err != nil || st.AllWindows || st.Keys != 0 {
		t.Errorf("second refresh of the new day: %+v, %v; want nothing recomputed", st, err)
	}

	// A result after the quiet ticks: one refresh takes it in, once.
	r := w.Results()[0]
	r.MeasuredAt = now.Add(-time.Minute)
	r.ID = uuidv7.New(r.MeasuredAt)
	if _, err := s.InsertResults(ctx, []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	st, err = d.Refresh(ctx)
	if err != nil {
		t.Fatalf("refresh after a new result: %v", err)
	}
	if st.Days != 1 || st.Keys != 1 || st.AllWindows {
		t.Errorf("refresh after a new result: %d keys, %d days, all windows %v; want 1 key and 1 day", st.Keys, st.Days, st.AllWindows)
	}
	if st, err := d.Refresh(ctx); err != nil || st.Days != 0 || st.Keys != 0 {
		t.Errorf("refresh after that: %+v, %v; want nothing recomputed", st, err)
	}
	rebuildMatches(t, s, d, "rebuild differs from the state the quiet and the dirty refreshes reached")
}

// TestOneReplicaAtATime: the collectors sharing a database refresh and
// rebuild the rollups one at a time. Two Datasets on their own pools stand
// for two replicas. While the refresh lock is held, as by a replica in
// the middle of a refresh, either one's Refresh skips without touching
// the derived tables and a Rebuild waits; once it is released the Rebuild
// runs and Refresh proceeds. Refreshes the two start together take each
// dirty day in once, and reach the state a rebuild reaches.
func TestOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	url := storetest.URL(t)
	replica := func() (*store.Store, *dataset.Dataset) {
		t.Helper()
		s, err := store.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		d, err := dataset.New(s.Pool, dataset.Config{}, datasettest.Clock)
		if err != nil {
			t.Fatal(err)
		}
		return s, d
	}
	sA, dA := replica()
	sB, dB := replica()
	w := datasettest.NewWorld()
	w.Seed(t, sA)
	seeded := snapshot(t, sB)

	holder, err := sA.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", dataset.RefreshLock); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*dataset.Dataset{"A": dA, "B": dB} {
		if st, err := d.Refresh(ctx); err != nil || !st.Skipped || st.Keys != 0 || st.Days != 0 {
			t.Errorf("replica %s's refresh while the lock is held: %+v, %v; want it skipped", name, st, err)
		}
	}
	if got := snapshot(t, sB); got != seeded {
		t.Errorf("skipped refreshes changed the derived tables: %s", firstDiff(seeded, got))
	}

	type outcome struct {
		st  dataset.RefreshStats
		err error
	}
	rebuilt := make(chan outcome, 1)
	go func() {
		st, err := dB.Rebuild(ctx, nil)
		rebuilt <- outcome{st, err}
	}()
	// Until the rebuild waits for the lock, it must not return.
	for waiting := 0; waiting == 0; {
		select {
		case o := <-rebuilt:
			t.Fatalf("a rebuild ran while another replica held the lock: %+v, %v", o.st, o.err)
		default:
		}
		if err := sB.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if o := <-rebuilt; o.err != nil || o.st.Skipped || o.st.Results != int64(len(w.Results())) {
		t.Errorf("rebuild after the lock was released: %+v, %v; want every one of the %d results counted", o.st, o.err, len(w.Results()))
	}
	if st, err := dA.Refresh(ctx); err != nil || st.Skipped {
		t.Errorf("refresh after the lock was released: %+v, %v; want it run", st, err)
	}

	// Both replicas' ticks at once, after new results.
	for round := range 3 {
		var late []store.Result
		for i, r := range w.Results()[:200] {
			r.MeasuredAt = r.MeasuredAt.Add(time.Duration(round+1) * time.Minute)
			r.ID = uuidv7.New(r.MeasuredAt.Add(time.Duration(i) * time.Microsecond))
			late = append(late, r)
		}
		if _, err := sA.InsertResults(ctx, late); err != nil {
			t.Fatal(err)
		}
		var dirty int
		if err := sA.Pool.QueryRow(ctx, "SELECT count(*) FROM (SELECT DISTINCT asn, family, day FROM agg_dirty) k").Scan(&dirty); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		outcomes := make(chan outcome, 2)
		for _, d := range []*dataset.Dataset{dA, dB} {
			go func() {
				<-start
				st, err := d.Refresh(ctx)
				outcomes <- outcome{st, err}
			}()
		}
		close(start)
		first, second := <-outcomes, <-outcomes
		if first.err != nil || second.err != nil {
			t.Fatalf("round %d: refreshes at once: %v, %v", round, first.err, second.err)
		}
		if first.st.Days+second.st.Days != dirty || (first.st.Days > 0 && second.st.Days > 0) {
			t.Errorf("round %d: refreshes at once took in %d and %d days (skipped: %v, %v); want the %d dirty days taken in once, by one of them",
				round, first.st.Days, second.st.Days, first.st.Skipped, second.st.Skipped, dirty)
		}
		t.Logf("round %d: %d dirty days; skipped: %v, %v", round, dirty, first.st.Skipped, second.st.Skipped)
	}
	rebuildMatches(t, sA, dB, "the replicas' refreshes differ from a rebuild")
}

// TestWindowsReadOneSnapshot: the refresh of the rolling windows reads the
// deltas and the daily tallies in one snapshot. The first one of a new UTC
// day recomputes the windows' sums from the tallies; a result committed
// while it runs (here, while it waits for a lock the test holds on
// agg_agent_window) must be taken in once, by the next refresh, not both
// in the recomputed sums and again from its delta.
func TestWindowsReadOneSnapshot(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	w := datasettest.NewWorld()
	w.Seed(t, s)
	now := datasettest.Now
	d, err := dataset.New(s.Pool, dataset.Config{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	now = dataset.Today(now).Add(dataset.Day + time.Minute)

	blocker, err := s.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, "LOCK TABLE agg_agent_window IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		st  dataset.RefreshStats
		err error
	}
	rolled := make(chan outcome, 1)
	go func() {
		st, err := d.RefreshWindows(ctx)
		rolled <- outcome{st, err}
	}()
	for waiting := 0; waiting == 0; {
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE relation = 'agg_agent_window'::regclass AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	r := w.Results()[0]
	r.MeasuredAt = now.Add(-30 * time.Second)
	r.ID = uuidv7.New(r.MeasuredAt)
	if _, err := s.InsertResults(ctx, []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if o := <-rolled; o.err != nil || !o.st.AllWindows {
		t.Fatalf("the first refresh of the windows on a new day: %+v, %v; want every window recomputed", o.st, o.err)
	}
	st, err := d.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Deltas != 1 || st.Keys != 1 || st.Days != 1 {
		t.Errorf("the refresh after: %d deltas, %d window keys, %d days; want the new result's 1 delta, key and day", st.Deltas, st.Keys, st.Days)
	}
	rebuildMatches(t, s, d, "a result committed during the windows' refresh was not counted once")
}

// TestRunCadence: Run refreshes the daily points at every tick and the
// rolling windows only when windowsEvery has passed since their last
// refresh, or a new UTC day began. The clock is the test's; the ticks are
// real and short.
func TestRunCadence(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	w := datasettest.NewWorld()
	w.Seed(t, s)
	var mu sync.Mutex
	now := datasettest.Now
	var days, windows []dataset.RefreshStats
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d, err := dataset.New(s.Pool, dataset.Config{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.Run(ctx, 5*time.Millisecond, time.Hour, slog.New(slog.DiscardHandler), func(st dataset.RefreshStats, err error) {
			if err != nil {
				t.Errorf("refresh: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if st.Windows {
				windows = append(windows, st)
			} else {
				days = append(days, st)
			}
		})
	}()
	// wait polls until cond holds, with the lock held, and returns the
	// windows' refreshes so far.
	wait := func(what string, cond func() bool) []dataset.RefreshStats {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			ok, ws := cond(), slices.Clone(windows)
			mu.Unlock()
			if ok {
				return ws
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited a minute for %s: %d refreshes of the days, %d of the windows", what, len(days), len(windows))
			}
		}
	}
	n := 0
	ws := wait("20 refreshes of the days", func() bool { n = len(days); return n >= 20 })
	if len(ws) != 1 || !ws[0].AllWindows {
		t.Fatalf("%d refreshes of the days brought %d of the windows (%+v); want only the first, of every window", n, len(ws), ws)
	}

	r := w.Results()[0]
	r.MeasuredAt = datasettest.Now.Add(-time.Minute)
	r.ID = uuidv7.New(r.MeasuredAt)
	if _, err := s.InsertResults(ctx, []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	ws = wait("the new result's day", func() bool {
		return slices.ContainsFunc(days, func(st dataset.RefreshStats) bool { return st.Days == 1 })
	})
	if len(ws) != 1 {
		t.Fatalf("a new result brought a refresh of the windows before their time: %+v", ws)
	}

	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	ws = wait("a refresh of the windows an hour later", func() bool { return len(windows) >= 2 })
	if st := ws[1]; st.AllWindows || st.Deltas != 1 || st.Keys != 1 {
		t.Errorf("the windows' refresh an hour later: %+v; want the new result's delta and key, not every window", st)
	}

	mu.Lock()
	now = dataset.Today(now).Add(dataset.Day + time.Second)
	mu.Unlock()
	ws = wait("the windows to move on after midnight", func() bool { return len(windows) >= 3 })
	if !ws[2].AllWindows {
		t.Errorf("the first refresh of the windows after midnight: %+v; want every window", ws[2])
	}
	cancel()
	<-ran
}
