package api

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/op25b/observatory/collector/store"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
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

func TestRefMTAGauges(t *testing.T) {
	m := NewRefreshMetrics(prometheus.NewRegistry())
	m.SetRefMTAs([]*op25bv1.RefMTAStats{
		{RefmtaId: "refmta-a", Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Port: 25, Conclusive: 40, Charged: 38,
			Blocked: &op25bv1.GroupShare{Share: 1}, Flagged: true},
		{RefmtaId: "refmta-b", Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6, Port: 587, Conclusive: 40, Blocked: &op25bv1.GroupShare{Share: 0.05}},
	})
	want := `
		# HELP op25b_refmta_flagged 1 when a reference MTA's blocked share is above the other reference MTAs' beyond doubt: look at its network.
		# TYPE op25b_refmta_flagged gauge
		op25b_refmta_flagged{family="ipv4",port="25",refmta="refmta-a"} 1
		op25b_refmta_flagged{family="ipv6",port="587",refmta="refmta-b"} 0
	`
	if err := testutil.CollectAndCompare(m.refmtaFlagged, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.refmtaCharged.WithLabelValues("refmta-a", "ipv4", "25")); got != 38 {
		t.Errorf("charged results = %v; want 38", got)
	}
	m.SetRefMTAs(nil)
	if n := testutil.CollectAndCount(m.refmtaBlocked); n != 0 {
		t.Errorf("%d blocked-share series left after the reference MTAs went away; want 0", n)
	}
}

func TestLostResultsByCause(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.lost(store.SpoolLoss{Full: 3, NoSpace: 36})
	m.lost(store.SpoolLoss{Full: 2, Corrupt: 1})
	want := `
		# HELP op25b_agent_results_lost_total Results agents reported lost before upload, by cause (full: the spool at its bound; no_space: the disk full; write_error: writing failed; corrupt: damaged on disk), as this collector recorded their counts grow.
		# TYPE op25b_agent_results_lost_total counter
		op25b_agent_results_lost_total{cause="corrupt"} 1
		op25b_agent_results_lost_total{cause="full"} 5
		op25b_agent_results_lost_total{cause="no_space"} 36
		op25b_agent_results_lost_total{cause="write_error"} 0
	`
	if err := testutil.CollectAndCompare(m.lostResults, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
