package api

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/op25b/observatory/collector/store"
)

func TestIngestLagAndAgentsOnline(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	now := time.Now()
	m.observe(store.Result{Verdict: 1, MeasuredAt: now.Add(-90 * time.Second)}, now)
	m.observe(store.Result{Verdict: 2, MeasuredAt: now.Add(-2 * time.Hour)}, now)
	want := `
		# HELP op25b_ingest_lag_seconds Time from a result's measurement to its commit.
		# TYPE op25b_ingest_lag_seconds histogram
		op25b_ingest_lag_seconds_bucket{le="1"} 0
		op25b_ingest_lag_seconds_bucket{le="5"} 0
		op25b_ingest_lag_seconds_bucket{le="15"} 0
		op25b_ingest_lag_seconds_bucket{le="60"} 0
		op25b_ingest_lag_seconds_bucket{le="300"} 1
		op25b_ingest_lag_seconds_bucket{le="900"} 1
		op25b_ingest_lag_seconds_bucket{le="3600"} 1
		op25b_ingest_lag_seconds_bucket{le="14400"} 2
		op25b_ingest_lag_seconds_bucket{le="86400"} 2
		op25b_ingest_lag_seconds_bucket{le="172800"} 2
		op25b_ingest_lag_seconds_bucket{le="+Inf"} 2
		op25b_ingest_lag_seconds_sum 7290
		op25b_ingest_lag_seconds_count 2
	`
	if err := testutil.CollectAndCompare(m.lag, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	m.streams.Inc()
	m.streams.Inc()
	m.streams.Dec()
	if got := testutil.ToFloat64(m.streams); got != 1 {
		t.Errorf("agents connected = %v; want 1", got)
	}
}
