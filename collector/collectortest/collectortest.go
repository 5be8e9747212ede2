// Package collectortest starts a real collector in-process for tests: real
// PostgreSQL (collector/store/storetest), real gRPC over TLS with the local
// CA, real enrollment. A package using it calls storetest.Main from
// TestMain.
package collectortest

import (
	"context"
	"crypto/tls"
	"errors"
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
	"github.com/op25b/observatory/collector/stream"
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
	Metrics *prometheus.Registry
	// Broker serves DatasetService.Stream; nil unless New was asked to
	// stream.
	Broker   *stream.Broker
	schedule *op25bv1.Schedule
	grpc     *grpc.Server
	// stop stops the broker's follower.
	stop func()
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
	c, err := New(storetest.New(t), t.TempDir(), opts, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// New is Start for a program that serves tests without being one
// (cmd/op25b-fixture): a collector over st, with its TLS files in dir,
// until Close. With stream it also serves DatasetService.Stream, as the
// collector does by default: the results st stores and the policy changes
// it logs, as they come.
func New(st *store.Store, dir string, opts api.Options, stream bool) (*Collector, error) {
	c := &Collector{Store: st, Auth: &auth.Service{Pool: st.Pool, Now: time.Now}, schedule: &op25bv1.Schedule{Version: "empty"},
		ASN: &ingest.Snapshots{}, stop: func() {}}
	cert, err := localca.Ensure(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		return nil, err
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
		return nil, err
	}
	ds := &dataset.Server{D: c.Dataset}
	if stream {
		if err := c.follow(); err != nil {
			return nil, err
		}
		ds.Streamer = c.Broker
	}
	op25bv1.RegisterDatasetServiceServer(srv, ds)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.stop()
		return nil, err
	}
	c.Addr, c.grpc = ln.Addr().String(), srv
	go srv.Serve(ln)
	return c, nil
}

// follow starts c's stream broker, fed by a follower of its store, and
// waits until the follower listens.
func (c *Collector) follow() error {
	c.Store.NotifyResults(true)
	c.Broker = stream.NewBroker(stream.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	f := stream.NewFollower(c.Store, c.Dataset, c.Broker, nil)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	c.stop = func() { cancel(); <-done }
	select {
	case <-f.Ready():
		return nil
	case <-time.After(10 * time.Second):
		c.stop()
		return errors.New("collectortest: the stream's follower never listened")
	}
}

// Close stops the collector; its store stays open.
func (c *Collector) Close() {
	c.grpc.Stop()
	c.stop()
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
