package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
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
	lostResults *prometheus.CounterVec
}

// The causes of op25b_agent_results_lost_total, as agent/spool counts
// them.
const (
	lostFull       = "full"
	lostNoSpace    = "no_space"
	lostWriteError = "write_error"
	lostCorrupt    = "corrupt"
)

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
		// By cause only: per agent they are in the database (summary).
		lostResults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "op25b_agent_results_lost_total",
			Help: "Results agents reported lost before upload, by cause (full: the spool at its bound; no_space: the disk full; write_error: writing failed; corrupt: damaged on disk), as this collector recorded their counts grow."},
			[]string{"cause"}),
	}
	for _, cause := range []string{lostFull, lostNoSpace, lostWriteError, lostCorrupt} {
		m.lostResults.WithLabelValues(cause) // at 0 from the start, so that increase() sees the first loss
	}
	reg.MustRegister(m.results, m.rejected, m.sightings, m.storeErrors, m.batches, m.streams, m.lag, m.lostResults)
	return m
}

// lost counts the growth of agents' loss counts.
func (m *Metrics) lost(grew store.SpoolLoss) {
	m.lostResults.WithLabelValues(lostFull).Add(float64(grew.Full))
	m.lostResults.WithLabelValues(lostNoSpace).Add(float64(grew.NoSpace))
	m.lostResults.WithLabelValues(lostWriteError).Add(float64(grew.WriteError))
	m.lostResults.WithLabelValues(lostCorrupt).Add(float64(grew.Corrupt))
}

func (m *Metrics) observe(r store.Result, committed time.Time) {
	m.results.WithLabelValues(verdict.Verdict(r.Verdict).String()).Inc()
	m.lag.Observe(committed.Sub(r.MeasuredAt).Seconds())
}

// RefreshMetrics are the dataset refresher's metrics, and the figures of
// each reference MTA that it brings up to date.
type RefreshMetrics struct {
	// Took is labelled with what was refreshed: "days" (the daily
	// points) or "windows" (the rolling windows).
	Took             *prometheus.HistogramVec
	Refreshed        prometheus.Gauge
	WindowsRefreshed prometheus.Gauge
	Failures         prometheus.Counter

	// Per reference MTA, family and port: the series are bounded by the
	// enrolled reference MTAs and a few ports each (dataset.RefMTAs).
	refmtaResults *prometheus.GaugeVec
	refmtaBlocked *prometheus.GaugeVec
	refmtaCharged *prometheus.GaugeVec
	refmtaFlagged *prometheus.GaugeVec
}

// NewRefreshMetrics registers the dataset refresher's metrics on reg.
func NewRefreshMetrics(reg prometheus.Registerer) *RefreshMetrics {
	m := &RefreshMetrics{
		Took: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "op25b_dataset_refresh_seconds",
			Help:    "Time one refresh of the published rollups took, by part: days (the daily points) or windows (the rolling windows).",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9)}, []string{"part"}),
		Refreshed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_dataset_refreshed_timestamp_seconds",
			Help: "When the published daily points were last brought up to date (Unix time)."}),
		WindowsRefreshed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_dataset_windows_refreshed_timestamp_seconds",
			Help: "When the published rolling windows were last brought up to date (Unix time)."}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_dataset_refresh_failures_total",
			Help: "Refreshes of the published rollups that failed (retried at the next)."}),
	}
	labels := []string{"refmta", "family", "port"}
	m.refmtaResults = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "op25b_refmta_results",
		Help: "Conclusive results of a reference MTA, family and port in the reference MTA window."}, labels)
	m.refmtaBlocked = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "op25b_refmta_blocked_share",
		Help: "Share of a reference MTA's conclusive results that are BLOCKED_*, in the reference MTA window."}, labels)
	m.refmtaCharged = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "op25b_refmta_charged_results",
		Help: "Results charged to a reference MTA's side (they differed from the other reference MTAs' in the same round), in the reference MTA window."}, labels)
	m.refmtaFlagged = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "op25b_refmta_flagged",
		Help: "1 when a reference MTA's blocked share is above the other reference MTAs' beyond doubt: look at its network."}, labels)
	reg.MustRegister(m.Took, m.Refreshed, m.WindowsRefreshed, m.Failures, m.refmtaResults, m.refmtaBlocked, m.refmtaCharged, m.refmtaFlagged)
	return m
}

// SetRefMTAs replaces the per-reference-MTA gauges with stats, so that a
// reference MTA or port no longer listed leaves no stale series.
func (m *RefreshMetrics) SetRefMTAs(stats []*op25bv1.RefMTAStats) {
	for _, g := range []*prometheus.GaugeVec{m.refmtaResults, m.refmtaBlocked, m.refmtaCharged, m.refmtaFlagged} {
		g.Reset()
	}
	for _, r := range stats {
		l := prometheus.Labels{"refmta": r.GetRefmtaId(), "family": dataset.FamilyName(r.GetFamily()), "port": strconv.Itoa(int(r.GetPort()))}
		m.refmtaResults.With(l).Set(float64(r.GetConclusive()))
		m.refmtaBlocked.With(l).Set(r.GetBlocked().GetShare())
		m.refmtaCharged.With(l).Set(float64(r.GetCharged()))
		flagged := 0.0
		if r.GetFlagged() {
			flagged = 1
		}
		m.refmtaFlagged.With(l).Set(flagged)
	}
}
