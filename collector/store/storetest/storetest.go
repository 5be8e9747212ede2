// Package storetest gives tests a real PostgreSQL: one private cluster per
// test binary (collector/pgcluster), or the server in $DATABASE_URL, and a
// fresh database per test so that tests never see each other's rows.
//
// A package that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
package storetest

import (
	"context"
	"fmt"
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

var (
	once    sync.Once
	cluster *pgcluster.Cluster
	baseURL string
	dir     string
	initErr error
	seq     atomic.Int64
)

// Main runs the tests and stops the cluster afterwards.
func Main(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Cluster returns the test binary's private cluster, starting it on first
// use (nil when $DATABASE_URL names a server instead).
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	once.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
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
		testenv.Unavailable(t, "no PostgreSQL for integration tests: "+initErr.Error())
	}
	return cluster
}

// URL creates a fresh, empty database and returns its connection string.
func URL(t testing.TB) string {
	t.Helper()
	Cluster(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		t.Fatalf("storetest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), seq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	cfg, err := pgx.ParseConfig(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = name
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
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
