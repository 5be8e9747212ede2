package store_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
)

// enrollAgent records a principal to report losses as.
func enrollAgent(t *testing.T, s *store.Store, id, label string) {
	t.Helper()
	if _, err := s.Pool.Exec(context.Background(), `INSERT INTO principals (principal_id, kind, public_key, credential_hash, label)
		VALUES ($1, 1, '\x00', $2, $3)`, id, []byte(id), label); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolLossOnlyGrows: the totals an agent reported survive a report of
// lower counts (a late or repeated one), and a new count (a wiped spool
// directory) adds to them instead of replacing them.
func TestSpoolLossOnlyGrows(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	enrollAgent(t, s, "agent-a", "home router")
	enrollAgent(t, s, "agent-b", "")
	const first, wiped = "0190e0a4-7c2e-7000-8000-000000000001", "0190e0a4-7c2e-7000-8000-000000000002"
	for _, step := range []struct {
		name     string
		agent    string
		report   store.SpoolLoss
		grew     store.SpoolLoss
		totalOfA store.SpoolLoss
	}{
		{"first report", "agent-a", store.SpoolLoss{SpoolID: first, Full: 10}, store.SpoolLoss{Full: 10}, store.SpoolLoss{Full: 10}},
		{"the same again", "agent-a", store.SpoolLoss{SpoolID: first, Full: 10}, store.SpoolLoss{}, store.SpoolLoss{Full: 10}},
		{"lower (late, or a restored copy)", "agent-a", store.SpoolLoss{SpoolID: first, Full: 4, Corrupt: 1}, store.SpoolLoss{Corrupt: 1}, store.SpoolLoss{Full: 10, Corrupt: 1}},
		{"grown", "agent-a", store.SpoolLoss{SpoolID: first, Full: 12, NoSpace: 3, Corrupt: 1}, store.SpoolLoss{Full: 2, NoSpace: 3}, store.SpoolLoss{Full: 12, NoSpace: 3, Corrupt: 1}},
		{"the spool wiped: a new count from zero", "agent-a", store.SpoolLoss{SpoolID: wiped, Full: 5, WriteError: 2}, store.SpoolLoss{Full: 5, WriteError: 2}, store.SpoolLoss{Full: 17, NoSpace: 3, WriteError: 2, Corrupt: 1}},
		{"an agent that predates the count", "agent-a", store.SpoolLoss{Full: 7}, store.SpoolLoss{Full: 7}, store.SpoolLoss{Full: 24, NoSpace: 3, WriteError: 2, Corrupt: 1}},
		{"nothing lost", "agent-b", store.SpoolLoss{SpoolID: first}, store.SpoolLoss{}, store.SpoolLoss{Full: 24, NoSpace: 3, WriteError: 2, Corrupt: 1}},
		{"another agent", "agent-b", store.SpoolLoss{SpoolID: first, NoSpace: 1}, store.SpoolLoss{NoSpace: 1}, store.SpoolLoss{Full: 24, NoSpace: 3, WriteError: 2, Corrupt: 1}},
	} {
		grew, err := s.RecordSpoolLoss(ctx, step.agent, step.report)
		if err != nil || grew != step.grew {
			t.Fatalf("%s: RecordSpoolLoss(%+v) = %+v, %v; want %+v", step.name, step.report, grew, err, step.grew)
		}
		losses, err := s.AgentLosses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(losses) == 0 || losses[0].Agent != "agent-a" || losses[0].Lost != step.totalOfA {
			t.Fatalf("%s: AgentLosses() = %+v; want agent-a first with %+v", step.name, losses, step.totalOfA)
		}
	}
	losses, _ := s.AgentLosses(ctx)
	if len(losses) != 2 || losses[0].Label != "home router" || losses[0].Spools != 3 || losses[0].Increased.IsZero() ||
		losses[1].Agent != "agent-b" || losses[1].Lost != (store.SpoolLoss{NoSpace: 1}) {
		t.Errorf("AgentLosses() = %+v; want agent-a (3 counts) and agent-b (1 no space)", losses)
	}
}

// TestSpoolLossConcurrentReports: the same report handled by several
// collectors at once is counted once.
func TestSpoolLossConcurrentReports(t *testing.T) {
	s := storetest.New(t)
	enrollAgent(t, s, "agent-a", "")
	var mu sync.Mutex
	var total store.SpoolLoss
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			grew, err := s.RecordSpoolLoss(context.Background(), "agent-a", store.SpoolLoss{SpoolID: "0190e0a4-7c2e-7000-8000-000000000001", Full: 100, Corrupt: int64(i % 2)})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total.Full += grew.Full
			total.Corrupt += grew.Corrupt
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != (store.SpoolLoss{Full: 100, Corrupt: 1}) {
		t.Errorf("growth reported by 8 concurrent reports sums to %+v; want full 100, corrupt 1", total)
	}
}

// TestMigrationKeepsSpoolDropped: migration 4 moves the count the
// collector kept before (principals.spool_dropped) into spool_loss.
func TestMigrationKeepsSpoolDropped(t *testing.T) {
	url := storetest.URL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"0001_init.sql", "0002_aggregates.sql", "0003_refmta_side.sql"} {
		sql, err := os.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", v+1, "migrations/"+name); err != nil {
			t.Fatal(err)
		}
	}
	for i, dropped := range []int{42, 0} {
		if _, err := conn.Exec(ctx, `INSERT INTO principals (principal_id, kind, public_key, credential_hash, label, spool_dropped)
			VALUES ($1, 1, '\x00', $2, '', $3)`, fmt.Sprintf("agent-%d", i), []byte{byte(i)}, dropped); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	losses, err := s.AgentLosses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != 1 || losses[0].Agent != "agent-0" || losses[0].Lost != (store.SpoolLoss{Full: 42}) {
		t.Errorf("AgentLosses() after migration = %+v; want agent-0's 42 full-spool drops", losses)
	}
	// The agent's next report, of its full spool since its start, does
	// not count those again.
	if grew, err := s.RecordSpoolLoss(ctx, "agent-0", store.SpoolLoss{Full: 40}); err != nil || grew.Total() != 0 {
		t.Errorf("RecordSpoolLoss(40 since start) after migration = %+v, %v; want no growth", grew, err)
	}
}
