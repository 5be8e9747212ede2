package api

import (
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
	}
	reg.MustRegister(m.results, m.rejected, m.sightings, m.storeErrors, m.batches)
	return m
}

func (m *Metrics) observe(r store.Result) {
	m.results.WithLabelValues(verdict.Verdict(r.Verdict).String()).Inc()
}
