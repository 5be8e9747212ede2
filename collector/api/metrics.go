package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/verdict"
)

// Metrics are the collector's Prometheus metrics.
type Metrics struct {
	results     *prometheus.CounterVec
	rejected    prometheus.Counter
	sightings   prometheus.Counter
	storeErrors prometheus.Counter
	batches     prometheus.Counter
	streams     prometheus.Gauge
	lag         prometheus.Histogram
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "op25b_results_stored_total",
			Help: "Results acknowledged after commit, by verdict."}, []string{"verdict"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_results_rejected_total",
			Help: "Results refused for good (invalid), with a reason sent to the agent."}),
		sightings: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_sightings_stored_total",
			Help: "Reference-MTA sightings stored."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_store_errors_total",
			Help: "Upload batches not acknowledged because storage failed."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_upload_batches_total",
			Help: "Result batches acknowledged."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_agents_connected",
			Help: "Agents with an open upload stream: the agents online."}),
		// From a second (live) to two days (an agent back from a long
		// outage with a full spool).
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "op25b_ingest_lag_seconds",
			Help:    "Time from a result's measurement to its commit.",
			Buckets: []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 2 * 24 * 3600}}),
	}
	reg.MustRegister(m.results, m.rejected, m.sightings, m.storeErrors, m.batches, m.streams, m.lag)
	return m
}

func (m *Metrics) observe(r store.Result, committed time.Time) {
	m.results.WithLabelValues(verdict.Verdict(r.Verdict).String()).Inc()
	m.lag.Observe(committed.Sub(r.MeasuredAt).Seconds())
}

// RefreshMetrics are the dataset refresher's metrics.
type RefreshMetrics struct {
	Took      prometheus.Histogram
	Refreshed prometheus.Gauge
	Failures  prometheus.Counter
}

// NewRefreshMetrics registers the dataset refresher's metrics on reg.
func NewRefreshMetrics(reg prometheus.Registerer) *RefreshMetrics {
	m := &RefreshMetrics{
		Took: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "op25b_dataset_refresh_seconds",
			Help: "Time one refresh of the published rollups took.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 9)}),
		Refreshed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_dataset_refreshed_timestamp_seconds",
			Help: "When the published rollups were last brought up to date (Unix time)."}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_dataset_refresh_failures_total",
			Help: "Refreshes of the published rollups that failed (retried at the next)."}),
	}
	reg.MustRegister(m.Took, m.Refreshed, m.Failures)
	return m
}
