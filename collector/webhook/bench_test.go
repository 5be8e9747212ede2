package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/webhook"
)

// BenchmarkDelivery measures the webhook delivery delay (make bench,
// BENCHMARKS.md): from the commit of a change event, as a refresh logs one
// (a row of policy_change_events and the notification), to the receiver
// holding the signed delivery, one event at a time, on loopback. The
// limit beside it is an HTTP POST of a delivery's size to the same
// receiver without the database: what the deliverer adds.
func BenchmarkDelivery(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(b)
	datasettest.NewWorld().Seed(b, s)
	d, err := dataset.New(s.Pool, dataset.Config{}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	arrived := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(webhook.HeaderSignature) == "" {
			b.Error("an unsigned delivery")
		}
		w.WriteHeader(http.StatusNoContent)
		arrived <- time.Now()
	}))
	defer srv.Close()
	if _, _, err := (&webhook.Registry{Pool: s.Pool}).Add(ctx, srv.URL, webhook.Filter{}); err != nil {
		b.Fatal(err)
	}
	dl := webhook.NewDeliverer(s.Pool, d, webhook.Options{Poll: time.Minute})
	var wg sync.WaitGroup
	wg.Go(func() { dl.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	for ready := false; !ready; time.Sleep(5 * time.Millisecond) {
		if err := s.Pool.QueryRow(ctx, "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'").Scan(&ready); err != nil {
			b.Fatal(err)
		}
	}
	var delays []time.Duration
	b.ResetTimer()
	for i := range b.N {
		tx, err := s.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO policy_change_events (asn, family, day, from_class, to_class, retracted, seen_at)
			VALUES (64506, 4, $1, 2, 1, false, now())`, datasettest.Now.AddDate(0, 0, -i%300)); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", dataset.EventsChannel); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		select {
		case at := <-arrived:
			delays = append(delays, at.Sub(committed))
		case <-time.After(30 * time.Second):
			b.Fatalf("event %d not delivered within 30s", i)
		}
	}
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")

	// The limit: the same receiver, a POST of a delivery's size.
	body := make([]byte, 600)
	var posts []time.Duration
	for range 200 {
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set(webhook.HeaderSignature, "sha256=limit")
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		<-arrived
		posts = append(posts, time.Since(t0))
	}
	slices.Sort(posts)
	b.ReportMetric(float64(posts[len(posts)/2].Microseconds())/1000, "post-p50-ms")
}
