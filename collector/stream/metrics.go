package stream

import "github.com/prometheus/client_golang/prometheus"

// Metrics count the stream's subscribers and events.
type Metrics struct {
	subs   prometheus.Gauge
	events prometheus.Counter
	sent   prometheus.Counter
	drops  *prometheus.CounterVec
}

// NewMetrics registers the stream's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		subs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_stream_subscribers",
			Help: "Live stream subscribers (SSE and gRPC) held by this collector."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_stream_events_published_total",
			Help: "Events (results, changes, gaps) this collector published to its live stream."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_stream_events_sent_total",
			Help: "Events written to live stream subscribers, summed over subscribers."}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "op25b_stream_subscribers_dropped_total",
			Help: "Live stream subscribers dropped or refused, by reason (slow: its buffer was full; shutdown: the collector stopped; full: refused at the subscriber cap)."},
			[]string{"reason"}),
	}
	for _, r := range []string{DropSlow, DropShutdown, "full"} {
		m.drops.WithLabelValues(r)
	}
	reg.MustRegister(m.subs, m.events, m.sent, m.drops)
	return m
}

func (m *Metrics) subscribers(n int) {
	if m != nil {
		m.subs.Set(float64(n))
	}
}

func (m *Metrics) published(n int) {
	if m != nil {
		m.events.Add(float64(n))
	}
}

// sentTo counts n events written to a subscriber.
func (m *Metrics) sentTo(n int) {
	if m != nil {
		m.sent.Add(float64(n))
	}
}

func (m *Metrics) dropped(reason string, subs int) {
	if m != nil {
		m.drops.WithLabelValues(reason).Inc()
		m.subs.Set(float64(subs))
	}
}
