// Package collectortest starts a real collector in-process for tests: real
// PostgreSQL (collector/store/storetest), real gRPC over TLS with the local
// CA, real enrollment. A package using it calls storetest.Main from
// TestMain.
package collectortest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/localca"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Collector is a running collector.
type Collector struct {
	Addr   string
	CAFile string
	Store  *store.Store
	Auth   *auth.Service
	Server *api.Server
	// ASN attributes results; empty until a test adds a table.
	ASN *ingest.Snapshots
	// Dataset serves the DatasetService; its clock is Now.
	Dataset *dataset.Dataset
	Now     func() time.Time
	// Metrics holds the server's metrics.
	Metrics  *prometheus.Registry
	schedule *op25bv1.Schedule
	grpc     *grpc.Server
}

// Gauge returns the value of the unlabelled gauge name, or -1 when the
// registry has none.
func (c *Collector) Gauge(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := c.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// Start starts a collector on a free loopback port with a fresh database;
// it stops when the test ends. opts may be zero.
func Start(t testing.TB, opts api.Options) *Collector {
	t.Helper()
	st := storetest.New(t)
	c := &Collector{Store: st, Auth: &auth.Service{Pool: st.Pool, Now: time.Now}, schedule: &op25bv1.Schedule{Version: "empty"},
		ASN: &ingest.Snapshots{}}
	dir := t.TempDir()
	cert, err := localca.Ensure(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.CAFile = filepath.Join(dir, localca.CACert)
	g := &api.Guard{Auth: c.Auth, UnaryTimeout: 10 * time.Second}
	srv, _ := api.NewGRPCServer(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, g, opts)
	c.Server = &api.Server{Auth: c.Auth, Store: st,
		Converter: &ingest.Converter{ASN: c.ASN, Limits: ingest.DefaultLimits, Now: time.Now},
		Keys:      &api.KeyCache{Lookup: c.Auth.RefMTAKeys, TTL: time.Second},
		Schedule:  func() *op25bv1.Schedule { return c.schedule }, Spread: &api.Spreader{},
		Log: slog.New(slog.DiscardHandler)}
	c.Metrics = prometheus.NewRegistry()
	c.Server.Metrics = api.NewMetrics(c.Metrics)
	c.Server.Register(srv)
	c.Now = time.Now
	if c.Dataset, err = dataset.New(st.Pool, dataset.Config{}, func() time.Time { return c.Now() }); err != nil {
		t.Fatal(err)
	}
	op25bv1.RegisterDatasetServiceServer(srv, &dataset.Server{D: c.Dataset})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.Addr, c.grpc = ln.Addr().String(), srv
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return c
}

// SetSchedule changes the schedule agents get.
func (c *Collector) SetSchedule(s *op25bv1.Schedule) {
	s.Version = api.ScheduleVersion(s)
	c.schedule = s
}

// Token creates an enrollment token for kind, good for uses enrollments.
func (c *Collector) Token(t testing.TB, kind auth.Kind, uses int) string {
	t.Helper()
	_, secret, err := c.Auth.CreateToken(context.Background(), "test", kind, time.Now().Add(time.Hour), uses)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// Dial connects a client the way agents do, closed when the test ends.
func (c *Collector) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := collectorclient.Dial([]string{c.Addr}, c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Count returns the number of rows of a table.
func (c *Collector) Count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := c.Store.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Lost returns the results agent reported lost before upload, summed over
// its spool's counts.
func (c *Collector) Lost(t testing.TB, agent string) store.SpoolLoss {
	t.Helper()
	losses, err := c.Store.AgentLosses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range losses {
		if l.Agent == agent {
			return l.Lost
		}
	}
	return store.SpoolLoss{}
}
