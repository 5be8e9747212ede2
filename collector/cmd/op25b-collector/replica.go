package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/op25b/observatory/collector/dataset"
)

// replicaEvery is how often the collector reads how far the replica the
// dataset is read from is behind, waiting at most replicaTimeout for the
// answer.
const (
	replicaEvery   = 15 * time.Second
	replicaTimeout = 5 * time.Second
)

// readReplica sends the queries of ds to the streaming replica at url
// (--read-database-url): it returns the dataset that reads from it, and a
// function that closes its pool. It exports the replica's lag as
// op25b_read_replica_lag_seconds on reg, read at once and then every
// replicaEvery until ctx ends.
func readReplica(ctx context.Context, url string, ds *dataset.Dataset, reg prometheus.Registerer, log *slog.Logger) (*dataset.Dataset, func(), error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("--read-database-url: %w", err)
	}
	w := &replicaWatch{ds: ds.WithReplica(pool), log: log,
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_read_replica_lag_seconds",
			Help: "How far the replica the dataset is read from (--read-database-url) is behind the primary (GetInfoResponse.replica_lag); NaN when unknown: the replica is unreachable, is no standby, or has replayed nothing since it started."})}
	if err := reg.Register(w.lag); err != nil {
		pool.Close()
		return nil, nil, err
	}
	w.check(ctx)
	go w.run(ctx)
	return w.ds, pool.Close, nil
}

// replicaWatch keeps the lag gauge of a replica and logs its state when
// that changes.
type replicaWatch struct {
	ds    *dataset.Dataset
	lag   prometheus.Gauge
	log   *slog.Logger
	state string
}

func (w *replicaWatch) run(ctx context.Context) {
	t := time.NewTicker(replicaEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx)
	}
}

// The states of a replica that check logs.
const (
	replicaFollowing  = "following"
	replicaNoReplay   = "no transaction replayed yet"
	replicaNotStandby = "not a standby"
	replicaDown       = "unreachable"
)

// check reads the replica's state into the gauge, and logs it when it
// changed.
func (w *replicaWatch) check(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	st, err := w.ds.Replica(qctx)
	cancel()
	state := replicaFollowing
	switch {
	case err != nil:
		state = replicaDown
	case !st.Replica:
		state = replicaNotStandby
	case !st.LagKnown:
		state = replicaNoReplay
	}
	if state == replicaFollowing {
		w.lag.Set(st.Lag.Seconds())
	} else {
		w.lag.Set(math.NaN())
	}
	if state == w.state || ctx.Err() != nil {
		return
	}
	w.state = state
	switch state {
	case replicaFollowing:
		w.log.Info("the dataset is read from a streaming replica", "lag", st.Lag.Round(time.Millisecond))
	case replicaNoReplay:
		w.log.Info("the dataset is read from a streaming replica that has replayed nothing since it started; its lag is unknown")
	case replicaNotStandby:
		w.log.Warn("--read-database-url names no standby in recovery (was it promoted?): the dataset is read from a database ingest does not write to")
	case replicaDown:
		w.log.Warn("the replica the dataset is read from is unreachable: the dataset API and the web page fail until it is back", "err", err)
	}
}
