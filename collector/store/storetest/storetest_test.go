package storetest

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/internal/testenv"
)

func TestMain(m *testing.M) { Main(m) }

// TestDatabaseDroppedAfterUse: a test's database is gone once the test
// ended, connections still open to it or not.
func TestDatabaseDroppedAfterUse(t *testing.T) {
	testenv.Integration(t, "PostgreSQL")
	var name string
	t.Run("user", func(t *testing.T) {
		s := New(t)
		if err := s.Pool.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		// A connection the test forgets to close.
		conn, err := pgx.Connect(context.Background(), URL(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn
	})
	if name == "" {
		t.Fatal("the subtest did not get a database")
	}
	conn, err := pgx.Connect(context.Background(), baseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	// This test binary's databases: others may share the server.
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
		fmt.Sprintf("test\\_%d\\_%%", os.Getpid())).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d test databases (%s among them) remain after the tests that made them ended; want 0", left, name)
	}
}

// TestServerFromTheTestVariableOnly: the collector's DATABASE_URL is
// never taken for a test's server.
func TestServerFromTheTestVariableOnly(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://op25b@collector-db.example/op25b")
	t.Setenv(EnvURL, "")
	if got := serverURL(); got != "" {
		t.Errorf("with only DATABASE_URL set, the tests' server = %q; want none (a private cluster)", got)
	}
	t.Setenv(EnvURL, "postgres://tester@127.0.0.1:5433/postgres")
	if got := serverURL(); got != "postgres://tester@127.0.0.1:5433/postgres" {
		t.Errorf("with %s set, the tests' server = %q; want its value", EnvURL, got)
	}
}

// TestStandby: a test's database is on the standby, read-only, with what
// the primary committed before Standby and, after CatchUp, what it
// committed since.
func TestStandby(t *testing.T) {
	ctx := context.Background()
	primaryURL := URL(t)
	primary, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	if _, err := primary.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	standbyURL := Standby(t, primaryURL)
	if standbyURL == primaryURL {
		t.Fatalf("Standby(%q) = the primary's URL", primaryURL)
	}
	replica, err := pgx.Connect(ctx, standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	sum := func() (n int, recovery bool) {
		t.Helper()
		if err := replica.QueryRow(ctx, "SELECT (SELECT sum(n) FROM kept), pg_is_in_recovery()").Scan(&n, &recovery); err != nil {
			t.Fatal(err)
		}
		return n, recovery
	}
	if n, recovery := sum(); n != 1 || !recovery {
		t.Errorf("on the standby: sum %d, in recovery %v; want 1, true", n, recovery)
	}
	if _, err := replica.Exec(ctx, "INSERT INTO kept VALUES (100)"); err == nil {
		t.Error("a write on the standby succeeded; want it refused")
	}
	// The tests' primary commits asynchronously (synchronous_commit=off).
	if _, err := primary.Exec(ctx, "INSERT INTO kept VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	CatchUp(t)
	if n, _ := sum(); n != 3 {
		t.Errorf("on the standby after CatchUp: sum %d; want 3", n)
	}
}
