package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/testenv"
)

// held runs calls to InsertResults while the store's one committer is held
// by a call blocked on a lock: they queue, and are committed together when
// the lock goes. It returns each call's count and error, by name.
func held(t *testing.T, s *store.Store, busy []store.Result, calls map[string][]store.Result) map[string]error {
	t.Helper()
	ctx := context.Background()
	s.SetCommitters(1)
	blocker, err := s.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	// Ingest's tally statement waits for this lock.
	if _, err := blocker.Exec(ctx, "LOCK TABLE agg_agent_day IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := map[string]error{}
	call := func(name string, rs []store.Result) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.InsertResults(ctx, rs)
			if err == nil && n != int64(len(rs)) && name != "replay" {
				err = fmt.Errorf("inserted %d of %d", n, len(rs))
			}
			if err == nil && name == "replay" && n != 0 {
				err = fmt.Errorf("a replay inserted %d", n)
			}
			mu.Lock()
			got[name] = err
			mu.Unlock()
		}()
	}
	call("busy", busy)
	testenv.WaitFor(t, "the busy insert to wait for the lock", 30*time.Second, func() bool {
		var waiting int
		s.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&waiting)
		return waiting > 0
	})
	for name, rs := range calls {
		call(name, rs)
	}
	testenv.WaitFor(t, "the calls to queue", 30*time.Second, func() bool { return s.Waiting() == len(calls) })
	blocker.Rollback(ctx)
	wg.Wait()
	return got
}

// TestGroupCommit: calls that wait while a commit runs are stored in one
// transaction, each learns its own count (a replayed batch: 0); a call
// whose rows PostgreSQL refuses fails alone, and the others of its group
// are then stored one by one.
func TestGroupCommit(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour).Truncate(time.Hour)
	replay := results(5, at)
	if n, err := s.InsertResults(ctx, replay); err != nil || n != 5 {
		t.Fatalf("first insert: %d, %v", n, err)
	}
	transactions := func() int {
		var n int
		if err := s.Pool.QueryRow(ctx, "SELECT count(DISTINCT received_at) FROM results").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	calls := map[string][]store.Result{"replay": replay}
	for i := range 6 {
		calls[fmt.Sprintf("queued-%d", i)] = results(4, at.Add(time.Duration(i+20)*time.Minute))
	}
	for name, err := range held(t, s, results(3, at.Add(10*time.Minute)), calls) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := count(t, s); n != 5+3+6*4 {
		t.Errorf("%d results stored; want %d", n, 5+3+6*4)
	}
	if n := transactions(); n != 3 {
		t.Errorf("%d transactions stored the results; want 3: the first call, the busy one, the seven queued ones together", n)
	}

	calls = map[string][]store.Result{}
	for i := range 3 {
		calls[fmt.Sprintf("after-%d", i)] = results(2, at.Add(time.Duration(i+40)*time.Minute))
	}
	poison := results(2, at.Add(50*time.Minute))
	poison[1].Failure = "nul\x00byte" // PostgreSQL refuses NUL in text
	calls["poison"] = poison
	got := held(t, s, results(1, at.Add(39*time.Minute)), calls)
	for name, err := range got {
		if (err == nil) == (name == "poison") {
			t.Errorf("%s: %v; want an error for the poison only", name, err)
		}
	}
	if n := count(t, s); n != 32+1+3*2 {
		t.Errorf("%d results stored; want %d", n, 32+1+3*2)
	}
	if n := transactions(); n != 3+1+3 {
		t.Errorf("%d transactions; want 7: the busy call, then the three good queued calls one by one after their group failed", n)
	}
}
