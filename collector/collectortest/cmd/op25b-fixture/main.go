// Command op25b-fixture serves real collectors to the tests of a program
// that cannot link this module: the Grafana plugin's (dashboard/, a module
// of its own with its own copy of the generated protobuf code, so that a
// binary linking both would panic in protobuf's registry). It takes its
// PostgreSQL as the tests do (collector/store/storetest: a private cluster
// from the installed server binaries, or $OP25B_TEST_DATABASE_URL), gives
// each collector a fresh database, and serves it with
// collector/collectortest: the collector's gRPC services over TLS on a
// free loopback port.
//
// It speaks the protocol of collector/collectortest/fixturewire on stdin
// and stdout: it greets with the seeded world's facts, then starts
// collectors (over the seeded world, on its clock and refreshed, or over
// an empty database on the real clock, optionally serving the live
// stream), stores results and policy changes in their databases, and says
// how many stream subscribers they hold. Its log goes to stderr. When
// stdin closes (or on SIGINT or SIGTERM) it stops the collectors, drops
// their databases, stops the cluster and exits.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/collectortest/fixturewire"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/stream"
	"github.com/op25b/observatory/internal/uuidv7"
)

// fixture holds the running collectors, by id (from 1).
type fixture struct {
	collectors []*collectortest.Collector
	// stop release what the collectors hold (server, store, directory,
	// database), last first.
	stop []func()
	log  *slog.Logger
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	requests := make(chan []byte)
	go func() {
		defer close(requests)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			requests <- bytes.Clone(sc.Bytes()) // the scanner reuses its buffer
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	out := json.NewEncoder(os.Stdout)
	err := run(requests, sig, out, log)
	storetest.Stop()
	if err != nil {
		log.Error("op25b-fixture", "err", err)
		os.Exit(1)
	}
}

// run greets on out, then serves requests until they end or a signal
// comes, and stops the collectors it started.
func run(requests <-chan []byte, sig <-chan os.Signal, out *json.Encoder, log *slog.Logger) error {
	w := &fixturewire.World{Now: datasettest.Now, ChangeDay: datasettest.ChangeDay, SchemaVersion: dataset.SchemaVersion,
		Addresses: datasettest.NewWorld().Addresses()}
	for _, a := range datasettest.ASNs {
		w.ASNs = append(w.ASNs, fixturewire.ASN{ASN: a.ASN, Class: a.Class})
	}
	if err := out.Encode(fixturewire.Response{World: w}); err != nil {
		return err
	}
	f := &fixture{log: log}
	defer f.close()
	for {
		select {
		case <-sig:
			return nil
		case line, ok := <-requests:
			if !ok {
				return nil
			}
			resp, err := f.serve(line)
			if err != nil {
				resp = fixturewire.Response{Error: err.Error()}
			}
			if err := out.Encode(resp); err != nil {
				return err
			}
		}
	}
}

func (f *fixture) close() {
	for i := len(f.stop) - 1; i >= 0; i-- {
		f.stop[i]()
	}
}

func (f *fixture) collector(id int) (*collectortest.Collector, error) {
	if id < 1 || id > len(f.collectors) {
		return nil, fmt.Errorf("no collector %d", id)
	}
	return f.collectors[id-1], nil
}

func (f *fixture) serve(line []byte) (fixturewire.Response, error) {
	var req fixturewire.Request
	if err := json.Unmarshal(line, &req); err != nil {
		return fixturewire.Response{}, err
	}
	ctx := context.Background()
	switch {
	case req.Start != nil:
		c, err := f.start(ctx, *req.Start)
		if errors.Is(err, storetest.ErrUnavailable) {
			return fixturewire.Response{Unavailable: err.Error()}, nil
		}
		return fixturewire.Response{Collector: c}, err
	case req.Insert != nil:
		c, err := f.collector(req.Insert.ID)
		if err != nil {
			return fixturewire.Response{}, err
		}
		rs, err := results(req.Insert.Results)
		if err != nil {
			return fixturewire.Response{}, err
		}
		n, err := c.Store.InsertResults(ctx, rs)
		return fixturewire.Response{Inserted: &n}, err
	case req.Change != nil:
		return fixturewire.Response{}, f.change(ctx, *req.Change)
	case req.Held != nil:
		c, err := f.collector(req.Held.ID)
		if err != nil {
			return fixturewire.Response{}, err
		}
		if c.Broker == nil {
			return fixturewire.Response{}, fmt.Errorf("collector %d does not stream", req.Held.ID)
		}
		n := stream.Held(c.Broker)
		return fixturewire.Response{Held: &n}, nil
	}
	return fixturewire.Response{}, fmt.Errorf("unknown request %s: want start, insert, change or held", line)
}

// change logs ch as a refresh logs a policy change, and notifies the
// collectors that follow the database.
func (f *fixture) change(ctx context.Context, ch fixturewire.Change) error {
	c, err := f.collector(ch.ID)
	if err != nil {
		return err
	}
	from, err := dataset.ParseClass(ch.From)
	if err != nil {
		return err
	}
	to, err := dataset.ParseClass(ch.To)
	if err != nil {
		return err
	}
	if _, err := c.Store.Pool.Exec(ctx, `INSERT INTO policy_change_events (asn, family, day, from_class, to_class, seen_at)
		VALUES ($1, $2, $3, $4, $5, now())`, ch.ASN, ch.Family, ch.Day, int(from), int(to)); err != nil {
		return err
	}
	_, err = c.Store.Pool.Exec(ctx, `SELECT pg_notify($1, '')`, dataset.EventsChannel)
	return err
}

// start starts a collector over a fresh database. What it holds is
// released when the fixture exits, whether or not it started.
func (f *fixture) start(ctx context.Context, o fixturewire.Options) (*fixturewire.Collector, error) {
	url, drop, err := storetest.Database()
	if err != nil {
		return nil, err
	}
	f.stop = append(f.stop, func() {
		if err := drop(); err != nil {
			f.log.Error("op25b-fixture", "err", err)
		}
	})
	st, err := store.Open(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	f.stop = append(f.stop, st.Close)
	dir, err := os.MkdirTemp("", "op25b-fixture-")
	if err != nil {
		return nil, err
	}
	f.stop = append(f.stop, func() { os.RemoveAll(dir) })
	c, err := collectortest.New(st, dir, api.Options{}, o.Stream)
	if err != nil {
		return nil, err
	}
	f.stop = append(f.stop, c.Close)
	if o.Seeded {
		c.Now = datasettest.Clock
		if err := datasettest.NewWorld().Insert(ctx, st); err != nil {
			return nil, err
		}
		if _, err := c.Dataset.Refresh(ctx); err != nil {
			return nil, err
		}
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	f.collectors = append(f.collectors, c)
	return &fixturewire.Collector{ID: len(f.collectors), Addr: c.Addr, CACert: string(ca)}, nil
}

// results are the stored results of rs, measured now.
func results(rs []fixturewire.Result) ([]store.Result, error) {
	var out []store.Result
	for _, r := range rs {
		v, err := dataset.ParseVerdict(r.Verdict)
		if err != nil {
			return nil, err
		}
		p, err := netip.ParsePrefix(r.Prefix)
		if err != nil {
			return nil, err
		}
		now := time.Now().Truncate(time.Microsecond)
		family := uint8(4)
		if p.Addr().Is6() {
			family = 6
		}
		out = append(out, store.Result{ID: uuidv7.New(now), MeasuredAt: now, AgentID: "agent-1", RefMTA: r.RefMTA,
			Port: r.Port, Family: family, Verdict: uint8(v), Failure: r.Failure, Egress: p.Addr().Next(),
			EgressSource: store.EgressControl, Prefix: p.Masked(), ASN: r.ASN})
	}
	return out, nil
}
