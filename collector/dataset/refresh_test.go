package dataset_test

import (
	"context"
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
		if st.Keys != 0 || st.Days != 0 || st.Windows {
			t.Fatalf("quiet refresh %d recomputed %d keys, %d days, all windows %v; want nothing", i, st.Keys, st.Days, st.Windows)
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
	if !st.Windows || st.Days != 0 || st.Keys == 0 {
		t.Errorf("first refresh of a new day: %d keys, %d days, all windows %v; want every window and no timeline day", st.Keys, st.Days, st.Windows)
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
	if st, err := d.Refresh(ctx); err != nil || st.Windows || st.Keys != 0 {
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
	if st.Days != 1 || st.Keys != 1 || st.Windows {
		t.Errorf("refresh after a new result: %d keys, %d days, all windows %v; want 1 key and 1 day", st.Keys, st.Days, st.Windows)
	}
	if st, err := d.Refresh(ctx); err != nil || st.Days != 0 || st.Keys != 0 {
		t.Errorf("refresh after that: %+v, %v; want nothing recomputed", st, err)
	}
	incremental := snapshot(t, s)
	if _, err := d.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if rebuilt := snapshot(t, s); rebuilt != incremental {
		t.Errorf("rebuild differs from the state the quiet and the dirty refreshes reached: %s", firstDiff(incremental, rebuilt))
	}
}
