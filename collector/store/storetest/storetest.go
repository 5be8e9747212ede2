// Package storetest gives tests a real PostgreSQL: one private cluster per
// test binary (collector/pgcluster), or the server in
// $OP25B_TEST_DATABASE_URL, and a fresh database per test, dropped when the
// test ends, so that tests never see each other's rows and leave none
// behind. The variable is a test's own: DATABASE_URL, which the collector
// reads, is never used, so that tests cannot write into a real collector's
// server.
//
// Standby gives the same databases read-only on a streaming replica of the
// private cluster, for tests of reads from a replica.
//
// A package that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// A program that serves tests without being one takes its databases from
// Database and calls Stop when done.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/pgcluster"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/testenv"
)

// EnvURL names the variable that gives tests a PostgreSQL server instead
// of a private cluster: a URL whose user may create and drop databases.
const EnvURL = "OP25B_TEST_DATABASE_URL"

var (
	once    sync.Once
	cluster *pgcluster.Cluster
	baseURL string
	dir     string
	initErr error
	seq     atomic.Int64

	standbyOnce sync.Once
	standby     *pgcluster.Cluster
	standbyErr  error
)

// Main runs the tests and stops the cluster afterwards.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the private cluster and its standby, if started, and removes
// their directory.
func Stop() {
	if standby != nil {
		standby.Stop()
	}
	if cluster != nil {
		cluster.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// ErrUnavailable is why Database fails on a machine that has no
// PostgreSQL for tests.
var ErrUnavailable = errors.New("no PostgreSQL for integration tests")

// Cluster returns the test binary's private cluster, starting it on first
// use (nil when $OP25B_TEST_DATABASE_URL names a server instead).
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	testenv.Integration(t, "PostgreSQL")
	if err := setUp(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	return cluster
}

// setUp starts the private cluster, or takes the server of
// $OP25B_TEST_DATABASE_URL, once; its error wraps ErrUnavailable.
func setUp() error {
	once.Do(func() {
		if u := serverURL(); u != "" {
			baseURL = u
			return
		}
		if _, err := pgcluster.FindBinDir(); err != nil {
			initErr = err
			return
		}
		dir, initErr = os.MkdirTemp("", "op25b-pg-")
		if initErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, initErr = pgcluster.Start(ctx, filepath.Join(dir, "pg"), pgcluster.Options{
			Settings: []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off"}})
		if initErr == nil {
			baseURL = cluster.URL()
		}
	})
	if initErr != nil {
		return fmt.Errorf("%w (install one, or set %s): %w", ErrUnavailable, EnvURL, initErr)
	}
	return nil
}

// URL creates a fresh, empty database and returns its connection string.
// The database is dropped when t ends, with the connections still open to
// it.
func URL(t testing.TB) string {
	t.Helper()
	Cluster(t)
	u, drop, err := database()
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
	return u
}

// Database is URL for a program that serves tests without being one
// (collector/collectortest/cmd/op25b-fixture): a fresh, empty database on
// the same server, and drop, which drops it with the connections still
// open to it. Such a program calls Stop when done.
func Database() (dbURL string, drop func() error, err error) {
	if err := setUp(); err != nil {
		return "", nil, err
	}
	return database()
}

func database() (string, func() error, error) {
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), seq.Add(1))
	if err := admin("CREATE DATABASE " + name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() error {
		if err := admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop the test's database %s: %w", name, err)
		}
		return nil
	}
	// The server's URL with the database replaced, password and
	// parameters kept.
	if u, err := url.Parse(baseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String(), drop, nil
	}
	return baseURL + " dbname=" + name, drop, nil // keyword/value form: the last one wins
}

// serverURL is the server the tests are given, if any.
func serverURL() string { return os.Getenv(EnvURL) }

// admin runs one statement on a connection to the server's URL.
func admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// New opens a migrated Store on a fresh database, closed when t ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Standby returns the URL of the database at dbURL (one that URL made) on a
// streaming standby of the private cluster, made on first use and stopped
// by Main, once the standby has replayed what the primary committed before
// the call (CatchUp). The standby refuses writes.
func Standby(t testing.TB, dbURL string) string {
	t.Helper()
	primary := Cluster(t)
	if primary == nil {
		testenv.Unavailable(t, "a standby is made of the tests' private cluster; "+EnvURL+" names an external server instead")
	}
	standbyOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		standby, standbyErr = primary.Standby(ctx, filepath.Join(dir, "standby"), pgcluster.Options{})
	})
	if standbyErr != nil {
		t.Fatalf("storetest: %v", standbyErr)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	u.Host = fmt.Sprintf("127.0.0.1:%d", standby.Port)
	CatchUp(t)
	return u.String()
}

// CatchUp waits until the standby has replayed everything the primary
// committed before the call, whatever its synchronous_commit.
func CatchUp(t testing.TB) {
	t.Helper()
	if standby == nil {
		t.Fatal("storetest: CatchUp without a standby: call Standby first")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A WAL record after every earlier commit, flushed (synchronous commit)
	// so that the primary sends it; its end is where replay must reach.
	var mark string
	err := func() error {
		conn, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT pg_logical_emit_message(true, 'storetest', 'catch up')::text").Scan(&mark)
		})
	}()
	if err != nil {
		t.Fatalf("storetest: mark the primary's WAL: %v", err)
	}
	conn, err := pgx.Connect(ctx, standby.URL())
	if err != nil {
		t.Fatalf("storetest: connect to the standby: %v", err)
	}
	defer conn.Close(ctx)
	for {
		var replayed bool
		err := conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", mark).Scan(&replayed)
		if err != nil {
			t.Fatalf("storetest: the standby's replay position: %v", err)
		}
		if replayed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("storetest: the standby did not replay the primary's WAL up to %s within 2 minutes", mark)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
