package stream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
	"github.com/op25b/observatory/collector/httpapi"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/stream"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	agentID = "agent-secret-7"
	egress4 = "198.51.100.77"
)

// result is a stored result of asn on port with verdict, from an agent
// whose id and full address must never be streamed.
func result(asn uint32, port uint16, v pb.Verdict) store.Result {
	now := time.Now().Truncate(time.Microsecond)
	return store.Result{ID: uuidv7.New(now), MeasuredAt: now, AgentID: agentID, RefMTA: "refmta-tokyo",
		Port: port, Family: 4, Verdict: uint8(v), Failure: "timeout", Egress: netip.MustParseAddr(egress4),
		EgressSource: store.EgressControl, Prefix: netip.MustParsePrefix("198.51.100.0/24"), ASN: asn}
}

func insert(t testing.TB, s *store.Store, rs ...store.Result) {
	t.Helper()
	if n, err := s.InsertResults(context.Background(), rs); err != nil || n != int64(len(rs)) {
		t.Fatalf("InsertResults = %d, %v; want %d", n, err, len(rs))
	}
}

// collector is one collector's stream: a broker fed by a follower of st,
// served over HTTP and gRPC on free ports.
type collector struct {
	broker *stream.Broker
	http   *datasetclient.Client
	url    string
	grpc   pb.DatasetServiceClient
}

func newCollector(t testing.TB, st *store.Store, opts stream.Options) *collector {
	t.Helper()
	st.NotifyResults(true)
	ds, err := dataset.New(st.Pool, dataset.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := stream.NewBroker(opts)
	ctx, cancel := context.WithCancel(context.Background())
	f := stream.NewFollower(st, ds, b, nil)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-f.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the follower never listened")
	}
	hs := httptest.NewServer(httpapi.New(nil, httpapi.Options{Stream: b}))
	t.Cleanup(hs.Close)
	hc, err := datasetclient.New(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterDatasetServiceServer(gs, &dataset.Server{D: ds, Streamer: b})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &collector{broker: b, http: hc, url: hs.URL, grpc: pb.NewDatasetServiceClient(conn)}
}

// subscriber reads an SSE stream in the background.
type subscriber struct {
	mu     sync.Mutex
	events []*pb.StreamResponse
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

func subscribe(t *testing.T, c *collector, req datasetclient.StreamRequest) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscriber{done: make(chan struct{}), cancel: cancel}
	before := subscribers(c)
	go func() {
		defer close(s.done)
		err := c.http.Stream(ctx, req, func(e *pb.StreamResponse) error {
			s.mu.Lock()
			s.events = append(s.events, e)
			s.mu.Unlock()
			return nil
		})
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	testenv.WaitFor(t, "the subscriber to be held", 15*time.Second, func() bool { return subscribers(c) > before })
	return s
}

// subscribers is how many subscribers c's broker holds.
func subscribers(c *collector) int { return stream.Held(c.broker) }

func (s *subscriber) got() []*pb.StreamResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pb.StreamResponse(nil), s.events...)
}

func (s *subscriber) wait(t *testing.T, n int) []*pb.StreamResponse {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("%d events", n), 15*time.Second, func() bool { return len(s.got()) >= n })
	return s.got()
}

func TestResultsAndChangesFiltered(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	if err := st.UpsertASNames(ctx, []store.ASHolder{{ASN: 64500, Name: "Example JP", Country: "JP"}, {ASN: 64501, Name: "Example DE", Country: "DE"}}); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, st, stream.Options{})
	jp25 := subscribe(t, c, datasetclient.StreamRequest{Country: "jp", Port: 25, Verdicts: []pb.Verdict{pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_OPEN}})
	all := subscribe(t, c, datasetclient.StreamRequest{})

	insert(t, st, result(64500, 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT), result(64500, 587, pb.Verdict_VERDICT_OPEN),
		result(64501, 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT), result(64500, 25, pb.Verdict_VERDICT_INTERCEPTED))
	// A policy change of AS64500, logged as the refresh does.
	if _, err := st.Pool.Exec(ctx, `INSERT INTO policy_change_events (asn, family, day, from_class, to_class, seen_at)
		VALUES (64500, 4, '2026-03-08', 3, 1, now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool.Exec(ctx, `SELECT pg_notify($1, '')`, dataset.EventsChannel); err != nil {
		t.Fatal(err)
	}
	insert(t, st, result(64500, 25, pb.Verdict_VERDICT_OPEN))

	got := all.wait(t, 6)
	if len(got) != 6 {
		t.Fatalf("unfiltered subscriber got %d events; want 6", len(got))
	}
	jp25.wait(t, 3)
	time.Sleep(100 * time.Millisecond) // nothing more may come
	filtered := jp25.got()
	var kinds []string
	for _, e := range filtered {
		switch ev := e.Event.(type) {
		case *pb.StreamResponse_Result:
			r := ev.Result
			kinds = append(kinds, fmt.Sprintf("result AS%d %s %d %s", r.Asn, r.Country, r.Port, dataset.VerdictName(r.Verdict)))
			if r.Prefix != "198.51.100.0/24" || r.RefmtaId != "refmta-tokyo" || r.Failure != "timeout" || r.MeasuredAt == nil {
				t.Errorf("result %v: public columns missing", r)
			}
		case *pb.StreamResponse_Change:
			ch := ev.Change
			kinds = append(kinds, fmt.Sprintf("change AS%d %s %s->%s", ch.Asn, ch.Country, ch.FromClass, ch.ToClass))
		}
		if e.Id == "" {
			t.Errorf("event %v has no id", e)
		}
	}
	want := []string{"result AS64500 JP 25 BLOCKED_TIMEOUT", "change AS64500 JP POLICY_CLASS_OPEN->POLICY_CLASS_OP25B", "result AS64500 JP 25 OPEN"}
	if strings.Join(kinds, "; ") != strings.Join(want, "; ") {
		t.Errorf("filtered subscriber got\n%s\nwant\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
}

// TestPrivacy reads the raw SSE bytes and the gRPC messages: no address
// and no agent id in any event.
func TestPrivacy(t *testing.T) {
	st := storetest.New(t)
	c := newCollector(t, st, stream.Options{})
	resp, err := http.Get(c.url + "/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q", ct)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gs, err := c.grpc.Stream(ctx, &pb.StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "two subscribers", 15*time.Second, func() bool { return subscribers(c) == 2 })
	insert(t, st, result(64500, 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT), result(64500, 465, pb.Verdict_VERDICT_OPEN))
	var raw strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for events := 0; events < 2 && sc.Scan(); {
		raw.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "event: result") {
			events++
		}
	}
	for range 2 {
		m, err := gs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		raw.WriteString(m.String())
	}
	for _, secret := range []string{egress4, agentID, "198.51.100.77"} {
		if strings.Contains(raw.String(), secret) {
			t.Errorf("the stream carries %q:\n%s", secret, raw.String())
		}
	}
	if !strings.Contains(raw.String(), "198.51.100.0/24") {
		t.Errorf("the stream lacks the prefix:\n%s", raw.String())
	}
}

func TestSecondCollectorSeesFirstsResults(t *testing.T) {
	st := storetest.New(t)
	other, err := store.Open(context.Background(), st.Pool.Config().ConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.NotifyResults(true)
	a := newCollector(t, st, stream.Options{})
	sub := subscribe(t, a, datasetclient.StreamRequest{ASN: 64500})
	insert(t, other, result(64500, 25, pb.Verdict_VERDICT_BLOCKED_RESET), result(64500, 587, pb.Verdict_VERDICT_OPEN))
	if got := sub.wait(t, 2); got[1].GetResult().GetPort() != 587 {
		t.Errorf("got %v", got)
	}
}

func TestResume(t *testing.T) {
	st := storetest.New(t)
	c := newCollector(t, st, stream.Options{Ring: 8})
	first := subscribe(t, c, datasetclient.StreamRequest{})
	for range 3 {
		insert(t, st, result(64500, 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT))
	}
	got := first.wait(t, 3)
	first.cancel()
	<-first.done
	insert(t, st, result(64500, 587, pb.Verdict_VERDICT_OPEN), result(64500, 465, pb.Verdict_VERDICT_OPEN))

	// Resumed after the second event: the third and the two missed.
	resumed := subscribe(t, c, datasetclient.StreamRequest{LastEventID: got[1].Id})
	back := resumed.wait(t, 3)
	if back[0].Id != got[2].Id || back[1].GetResult().GetPort() != 587 || back[2].GetResult().GetPort() != 465 {
		t.Errorf("resumed with %v", back)
	}

	// Ten more: the second event is out of the ring of 8.
	for range 10 {
		insert(t, st, result(64500, 25, pb.Verdict_VERDICT_OPEN))
	}
	resumed.wait(t, 13)
	old := subscribe(t, c, datasetclient.StreamRequest{LastEventID: got[1].Id})
	gap := old.wait(t, 9)
	// Events 1..15 published, 8..15 kept; after 2, 3..7 were missed.
	if g := gap[0].GetGap(); g == nil || g.Missed != 5 || !strings.Contains(g.Reason, "too old") {
		t.Errorf("first event after a too old id: %v; want a gap of 5", gap[0])
	}
	if len(gap) != 9 {
		t.Errorf("after the gap %d events; want the 8 kept", len(gap)-1)
	}

	foreign := subscribe(t, c, datasetclient.StreamRequest{LastEventID: "otherepoch-3"})
	if g := foreign.wait(t, 1)[0].GetGap(); g == nil || g.Missed != 0 {
		t.Errorf("another collector's id: %v; want a gap of unknown size", foreign.got()[0])
	}
}

// TestSlowSubscriberDropped: a subscriber that never reads is dropped with
// its reason while ingest goes on and another gets every event.
func TestSlowSubscriberDropped(t *testing.T) {
	st := storetest.New(t)
	// The buffer holds more than one notification's results (a batch
	// here), less than all of them.
	c := newCollector(t, st, stream.Options{Buffer: 200})
	stuck, err := c.broker.Subscribe(stream.Filter{}, "")
	if err != nil {
		t.Fatal(err)
	}
	reader := subscribe(t, c, datasetclient.StreamRequest{})
	const batches, per = 20, 50
	start := time.Now()
	for range batches {
		rs := make([]store.Result, per)
		for i := range rs {
			rs[i] = result(64500, 25, pb.Verdict_VERDICT_OPEN)
		}
		insert(t, st, rs...)
	}
	t.Logf("ingest of %d results with a stuck subscriber: %v", batches*per, time.Since(start))
	if got := reader.wait(t, batches*per); len(got) != batches*per {
		t.Errorf("the reading subscriber got %d events; want %d", len(got), batches*per)
	}
	n := 0
	for range stuck.C() {
		n++
	}
	if n != 200 || !strings.Contains(stuck.Reason(), "too slow") {
		t.Errorf("stuck subscriber: %d events then closed with %q; want 200 and too slow", n, stuck.Reason())
	}
}

func TestDroppedSubscribersAreTold(t *testing.T) {
	st := storetest.New(t)
	c := newCollector(t, st, stream.Options{MaxSubscribers: 2})
	sse := subscribe(t, c, datasetclient.StreamRequest{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gs, err := c.grpc.Stream(ctx, &pb.StreamRequest{Port: 25})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "two subscribers", 15*time.Second, func() bool { return subscribers(c) == 2 })

	// Beyond the cap: 503.
	err = c.http.Stream(ctx, datasetclient.StreamRequest{}, func(*pb.StreamResponse) error { return nil })
	var apiErr *datasetclient.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("a third subscriber: %v; want 503", err)
	}

	insert(t, st, result(64500, 25, pb.Verdict_VERDICT_OPEN))
	if m, err := gs.Recv(); err != nil || m.GetResult().GetAsn() != 64500 {
		t.Fatalf("gRPC Recv = %v, %v", m, err)
	}
	c.broker.Close()
	if _, err := gs.Recv(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("gRPC after Close: %v; want RESOURCE_EXHAUSTED with the reason", err)
	}
	<-sse.done
	var dropped *datasetclient.DroppedError
	if !errors.As(sse.err, &dropped) || !strings.Contains(dropped.Message, "shutting down") {
		t.Errorf("SSE after Close: %v; want a DroppedError with the reason", sse.err)
	}
}

func TestInvalidFilters(t *testing.T) {
	st := storetest.New(t)
	c := newCollector(t, st, stream.Options{})
	for _, q := range []string{"port=26", "verdict=MAYBE", "country=JPN", "asn=x", "family=ipv4"} {
		resp, err := http.Get(c.url + "/api/v1/stream?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /api/v1/stream?%s = %d; want 400", q, resp.StatusCode)
		}
	}
	gs, err := c.grpc.Stream(context.Background(), &pb.StreamRequest{Port: 26})
	if err == nil {
		_, err = gs.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC Stream of port 26: %v; want INVALID_ARGUMENT", err)
	}
}

// TestReconnectSendsGap: when the listening connection dies, the follower
// reconnects, tells subscribers that events may be missing, and streams
// again.
func TestReconnectSendsGap(t *testing.T) {
	st := storetest.New(t)
	c := newCollector(t, st, stream.Options{})
	sub := subscribe(t, c, datasetclient.StreamRequest{})
	insert(t, st, result(64500, 25, pb.Verdict_VERDICT_OPEN))
	sub.wait(t, 1)
	ctx := context.Background()
	var killed int
	if err := st.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners, %v; want 1", killed, err)
	}
	got := sub.wait(t, 2)
	if g := got[1].GetGap(); g == nil || !strings.Contains(g.Reason, "lost its database connection") {
		t.Fatalf("after the connection broke: %v; want a gap", got[1])
	}
	insert(t, st, result(64500, 587, pb.Verdict_VERDICT_OPEN))
	if got := sub.wait(t, 3); got[2].GetResult().GetPort() != 587 {
		t.Errorf("after the reconnection: %v", got[2])
	}
}
