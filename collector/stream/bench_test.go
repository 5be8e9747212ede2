package stream_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/stream"
	"github.com/op25b/observatory/internal/testenv"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// batchOf returns a batch of 200 results (an agent's upload) whose
// reference MTA id names the batch, for the subscribers to time it.
func batchOf(n int) []store.Result {
	rs := make([]store.Result, 200)
	for i := range rs {
		rs[i] = result(64500+uint32(i%50), 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT)
		rs[i].RefMTA = "b" + strconv.Itoa(n)
	}
	return rs
}

// BenchmarkIngest is the cost of the announcements to ingest: batches of
// 200 stored by 8 callers at once (merged by group commit), as fast as
// they go, with NotifyResults off and on. Compare results/s.
func BenchmarkIngest(b *testing.B) {
	for _, notify := range []bool{false, true} {
		b.Run(fmt.Sprintf("notify=%v", notify), func(b *testing.B) {
			st := storetest.New(b)
			st.NotifyResults(notify)
			insert(b, st, batchOf(0)...) // the partition
			var next atomic.Int64
			batches := (b.N + 199) / 200
			b.ResetTimer()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for n := int(next.Add(1)); n <= batches; n = int(next.Add(1)) {
						if _, err := st.InsertResults(context.Background(), batchOf(n)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(batches*200)/b.Elapsed().Seconds(), "results/s")
		})
	}
}

// BenchmarkFanout holds subs SSE subscribers over real HTTP on one
// collector while results are stored at the design rate, 2,000 a second
// (a batch of 200 every 100 ms) for 5 s, and reports the delay from the
// return of InsertResults (the commit acknowledged) to the arrival of
// each event at each subscriber, p50 and p99, and the subscribers
// dropped. Run with -benchtime 1x.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 250, 500} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			for range b.N {
				fanout(b, subs)
			}
		})
	}
}

func fanout(b *testing.B, subs int) {
	st := storetest.New(b)
	insert(b, st, batchOf(0)...)
	c := newCollector(b, st, stream.Options{MaxSubscribers: subs})
	const batches, every = 50, 100 * time.Millisecond
	committed := make([]atomic.Int64, batches+1)

	type receipt struct {
		batch int32
		at    int64
	}
	received := make([][]receipt, subs)
	counts := make([]atomic.Int64, subs)
	finished := make([]atomic.Bool, subs)
	var dropped atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: subs}}
	for i := range subs {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/api/v1/stream", nil)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		readers.Go(func() {
			defer finished[i].Store(true)
			defer resp.Body.Close()
			r := bufio.NewReaderSize(resp.Body, 64<<10)
			mark := []byte(`"refmta_id":"b`)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if bytes.HasPrefix(line, []byte("event: error")) {
					dropped.Add(1)
					return
				}
				if j := bytes.Index(line, mark); j >= 0 {
					rest := line[j+len(mark):]
					n, _ := strconv.Atoi(string(rest[:bytes.IndexByte(rest, '"')]))
					received[i] = append(received[i], receipt{int32(n), time.Now().UnixNano()})
					counts[i].Add(1)
				}
			}
		})
	}
	testenv.WaitFor(b, "the subscribers", 15*time.Second, func() bool { return subscribers(c) == subs })

	start := time.Now()
	tick := time.NewTicker(every)
	var ingest sync.WaitGroup
	var slowest atomic.Int64
	for n := 1; n <= batches; n++ {
		<-tick.C
		ingest.Go(func() {
			t0 := time.Now()
			if _, err := st.InsertResults(context.Background(), batchOf(n)); err != nil {
				b.Error(err)
			}
			committed[n].Store(time.Now().UnixNano())
			if d := time.Since(t0).Nanoseconds(); d > slowest.Load() {
				slowest.Store(d)
			}
		})
	}
	tick.Stop()
	ingest.Wait()
	elapsed := time.Since(start)
	// Let the last events arrive.
	want := batches * 200
	testenv.WaitFor(b, "delivery", 15*time.Second, func() bool {
		for i := range counts {
			if counts[i].Load() < int64(want) && !finished[i].Load() {
				return false
			}
		}
		return true
	})
	cancel()
	readers.Wait()

	var delays []float64
	got := 0
	for _, rs := range received {
		got += len(rs)
		for _, r := range rs {
			d := float64(r.at-committed[r.batch].Load()) / 1e6
			delays = append(delays, max(d, 0))
		}
	}
	slices.Sort(delays)
	q := func(p float64) float64 {
		if len(delays) == 0 {
			return 0
		}
		return delays[int(p*float64(len(delays)-1))]
	}
	b.ReportMetric(float64(want)/elapsed.Seconds(), "results/s")
	b.ReportMetric(q(0.5), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(got)/float64(want*subs), "delivered")
	b.ReportMetric(float64(dropped.Load()), "dropped")
	b.ReportMetric(float64(slowest.Load())/1e6, "slowest_insert_ms")
}
