package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/webhook"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// receiver is a webhook endpoint that checks each delivery's signature
// the way docs/operator.md tells receivers to, independently of Sign, and
// answers with the next of its statuses (the last one repeats).
type receiver struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	secret   string
	statuses []int
	got      []delivery
	arrived  chan delivery
	clock    *clock // the deliverer's, nil: time.Now
}

// clock is a test's clock, read by the deliverer and the receivers.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (r *receiver) now() time.Time {
	if r.clock != nil {
		return r.clock.now()
	}
	return time.Now()
}

type delivery struct {
	id     string
	body   webhook.Payload
	status int
	at     time.Time
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{t: t, statuses: statuses, arrived: make(chan delivery, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, sig := req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature)
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write([]byte(ts + "." + string(body)))
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(sig), []byte(want)) || req.Method != http.MethodPost {
		r.t.Errorf("%s delivery with signature %q over timestamp %q; want %q", req.Method, sig, ts, want)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if err := webhook.Verify(r.secret, ts, sig, body, r.now(), 5*time.Minute); err != nil {
		r.t.Errorf("Verify: %v", err)
	}
	d := delivery{id: req.Header.Get(webhook.HeaderEventID), status: r.statuses[min(len(r.got), len(r.statuses)-1)], at: time.Now()}
	if err := json.Unmarshal(body, &d.body); err != nil {
		r.t.Errorf("delivery body %s: %v", body, err)
	}
	r.got = append(r.got, d)
	w.WriteHeader(d.status)
	r.arrived <- d
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// world is a seeded database whose rollups were not refreshed yet: the
// first refresh logs AS64506's change.
func world(t *testing.T, now func() time.Time) (*store.Store, *dataset.Dataset) {
	s := storetest.New(t)
	datasettest.NewWorld().Seed(t, s)
	d, err := dataset.New(s.Pool, dataset.Config{}, now)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

func add(t *testing.T, reg *webhook.Registry, url string, f webhook.Filter) int64 {
	t.Helper()
	id, secret, err := reg.Add(context.Background(), url, f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") || len(secret) != len("whsec_")+64 {
		t.Errorf("secret %q; want whsec_ and 32 random bytes in hex", secret)
	}
	return id
}

type attemptRow struct {
	Attempt int
	Status  *int
	Error   string
}

func attempts(t *testing.T, s *store.Store, hook int64) []attemptRow {
	t.Helper()
	rows, _ := s.Pool.Query(context.Background(), "SELECT attempt, status, error FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id", hook)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSignedRetriedDisabled: a receiver that fails twice gets the change
// once more and accepts it on the third attempt, each signed; the log has
// the three attempts. A webhook whose receiver always fails is disabled
// after MaxFailures attempts, and enabling it resumes from that event.
// One whose filters select nothing gets nothing. The deliverer's clock is
// the test's: each round comes an hour after the last, past any backoff.
func TestSignedRetriedDisabled(t *testing.T) {
	ctx := context.Background()
	s, d := world(t, datasettest.Clock)
	reg := &webhook.Registry{Pool: s.Pool}
	if _, _, err := reg.Add(ctx, "ftp://example.net/hook", webhook.Filter{}); err == nil || !strings.Contains(err.Error(), "http:// or https://") {
		t.Errorf("Add(ftp URL) = %v; want an error saying it takes http(s) URLs only", err)
	}

	flaky, failing, other := newReceiver(t, 500, 500, 200), newReceiver(t, 503), newReceiver(t, 200)
	flakyID := add(t, reg, flaky.srv.URL+"/hook", webhook.Filter{Country: "JP"})
	failingID := add(t, reg, failing.srv.URL, webhook.Filter{ASN: 64506, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	otherID := add(t, reg, other.srv.URL, webhook.Filter{Country: "US"})
	hooks, err := reg.List(ctx)
	if err != nil || len(hooks) != 3 {
		t.Fatalf("List = %d webhooks, %v; want 3", len(hooks), err)
	}
	// The receivers learn their secrets from the database, as their
	// operators would from the output of webhook add.
	for _, r := range []struct {
		rc *receiver
		id int64
	}{{flaky, flakyID}, {failing, failingID}, {other, otherID}} {
		if err := s.Pool.QueryRow(ctx, "SELECT secret FROM webhooks WHERE id = $1", r.id).Scan(&r.rc.secret); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	clk.set(datasettest.Now)
	for _, r := range []*receiver{flaky, failing, other} {
		r.clock = clk
	}
	var observedMu sync.Mutex
	var observed []string
	dl := webhook.NewDeliverer(s.Pool, d, webhook.Options{MaxFailures: 3, PublicURL: "https://observatory.example/",
		Now: clk.now, Logger: slog.New(slog.DiscardHandler),
		Observe: func(o string, _ time.Duration) {
			observedMu.Lock()
			observed = append(observed, o)
			observedMu.Unlock()
		}})
	for range 5 {
		if err := dl.Round(ctx); err != nil {
			t.Fatal(err)
		}
		clk.add(time.Hour)
	}

	got := flaky.deliveries()
	if len(got) != 3 || got[2].status != 200 {
		t.Fatalf("the flaky receiver got %d deliveries; want 3, the last answered 200", len(got))
	}
	want := webhook.Payload{Type: "policy_change", ASN: 64506, ASName: "Switching ISP", Country: "JP", Family: "ipv4",
		Day: datasettest.ChangeDay.Format(time.DateOnly), FromClass: "OPEN", ToClass: "OP25B",
		URL: "https://observatory.example/asn/64506"}
	for i, g := range got {
		b := g.body
		if b.EventID == 0 || g.id != jsonNumber(b.EventID) || !b.SeenAt.Equal(datasettest.Now) {
			t.Errorf("delivery %d: event id header %s, body %+v; want the event's id in both and seen_at %s", i, g.id, b, datasettest.Now)
		}
		b.EventID, b.SeenAt = 0, time.Time{}
		if b != want {
			t.Errorf("delivery %d: %+v; want %+v", i, b, want)
		}
	}
	three := func(last int) []attemptRow {
		s1, s2, s3 := 500, 500, last
		return []attemptRow{{1, &s1, "HTTP status 500"}, {2, &s2, "HTTP status 500"}, {3, &s3, ""}}
	}
	if a := attempts(t, s, flakyID); !equalAttempts(a, three(200)) {
		t.Errorf("deliveries log of the flaky webhook: %s; want attempts 1 and 2 answered 500 and attempt 3 200", showAttempts(a))
	}

	if got := failing.deliveries(); len(got) != 3 {
		t.Errorf("the failing receiver got %d deliveries; want 3 (MaxFailures), then none", len(got))
	}
	if a := attempts(t, s, failingID); len(a) != 3 || a[2].Attempt != 3 || a[2].Status == nil || *a[2].Status != 503 {
		t.Errorf("deliveries log of the failing webhook: %s; want 3 attempts answered 503", showAttempts(a))
	}
	if got := other.deliveries(); len(got) != 0 {
		t.Errorf("a webhook for US networks got %d deliveries of a JP change", len(got))
	}
	hooks, _ = reg.List(ctx)
	byID := map[int64]webhook.Webhook{}
	for _, h := range hooks {
		byID[h.ID] = h
	}
	if h := byID[failingID]; h.Enabled || h.Disabled == nil || !strings.Contains(h.DisabledReason, "3 consecutive failed deliveries") {
		t.Errorf("failing webhook: %+v; want it disabled after 3 failures, saying so", h)
	}
	if h := byID[flakyID]; !h.Enabled || h.Failures != 0 || h.LastEventID == 0 {
		t.Errorf("flaky webhook: %+v; want it enabled, no failures, its cursor at the event", h)
	}
	if h := byID[otherID]; h.LastEventID != byID[flakyID].LastEventID {
		t.Errorf("the US webhook's cursor is %d; want it past the event it does not take (%d)", h.LastEventID, byID[flakyID].LastEventID)
	}
	if n := count(observed, webhook.Delivered); n != 1 || count(observed, webhook.Failed) != 5 {
		t.Errorf("observed %q; want 1 delivered and 5 failed", observed)
	}

	// Enabled again, the failing webhook gets the event it stopped at.
	failing.mu.Lock()
	failing.statuses = []int{503, 503, 503, 204}
	failing.mu.Unlock()
	if err := reg.Enable(ctx, failingID); err != nil {
		t.Fatal(err)
	}
	if err := dl.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got := failing.deliveries(); len(got) != 4 || got[3].status != 204 || got[3].id != got[0].id {
		t.Errorf("after enable the failing receiver has %d deliveries; want a 4th of the same event, answered 204", len(got))
	}
	if a := attempts(t, s, failingID); len(a) != 4 || a[3].Attempt != 4 {
		t.Errorf("deliveries log after enable: %s; want attempt 4 (the event's fourth try)", showAttempts(a))
	}

	if err := reg.Remove(ctx, failingID); err != nil {
		t.Fatal(err)
	}
	if err := reg.Remove(ctx, failingID); err == nil {
		t.Error("removing a removed webhook succeeded; want an error")
	}
	if err := reg.Enable(ctx, 999); err == nil {
		t.Error("enabling no webhook succeeded; want an error")
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func equalAttempts(a, b []attemptRow) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Attempt != b[i].Attempt || a[i].Error != b[i].Error || (a[i].Status == nil) != (b[i].Status == nil) ||
			a[i].Status != nil && *a[i].Status != *b[i].Status {
			return false
		}
	}
	return true
}

func showAttempts(a []attemptRow) string {
	var out []string
	for _, r := range a {
		st := "no status"
		if r.Status != nil {
			st = jsonNumber(int64(*r.Status))
		}
		out = append(out, jsonNumber(int64(r.Attempt))+": "+st+" "+r.Error)
	}
	return "[" + strings.Join(out, "; ") + "]"
}

// TestUnreachable: a receiver that cannot be reached is a failed attempt
// with the error logged and no status.
func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	s, d := world(t, datasettest.Clock)
	reg := &webhook.Registry{Pool: s.Pool}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	id := add(t, reg, dead.URL, webhook.Filter{})
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := webhook.NewDeliverer(s.Pool, d, webhook.Options{}).Round(ctx); err != nil {
		t.Fatal(err)
	}
	if a := attempts(t, s, id); len(a) != 1 || a[0].Status != nil || !strings.Contains(a[0].Error, "connection refused") {
		t.Errorf("deliveries log: %s; want one attempt with the connection's error and no status", showAttempts(a))
	}
}

// TestRunOneAtATime: two deliverers run, as on two collectors; the
// refresh's notification wakes the one holding the lock (the poll is a
// minute, longer than the test waits), and the receiver gets each event
// once. It logs the delay from the events' seen_at to the receiver's
// answer: BENCHMARKS.md, webhook delivery delay.
func TestRunOneAtATime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, d := world(t, time.Now)
	rc := newReceiver(t, 200)
	reg := &webhook.Registry{Pool: s.Pool}
	id := add(t, reg, rc.srv.URL, webhook.Filter{})
	if err := s.Pool.QueryRow(ctx, "SELECT secret FROM webhooks WHERE id = $1", id).Scan(&rc.secret); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		// Batch 1: the two events of one refresh take two reads.
		dl := webhook.NewDeliverer(s.Pool, d, webhook.Options{Poll: time.Minute, Batch: 1})
		wg.Go(func() { dl.Run(ctx) })
	}
	defer wg.Wait()
	defer cancel()
	// Let a deliverer take the lock and listen before the refresh.
	for ready := false; !ready; {
		if err := s.Pool.QueryRow(ctx, "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'").Scan(&ready); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	wait := func(n int) []delivery {
		t.Helper()
		var out []delivery
		for range n {
			select {
			case g := <-rc.arrived:
				out = append(out, g)
			case <-time.After(20 * time.Second):
				t.Fatalf("the receiver got %d of %d deliveries", len(out), n)
			}
		}
		return out
	}
	if _, err := d.RefreshDays(ctx); err != nil {
		t.Fatal(err)
	}
	got := wait(1)
	// Late results turn the change into another: two events more.
	late := &datasettest.World{}
	late.Farm(64506, 2, 1)
	if _, err := s.InsertResults(ctx, late.Results()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RefreshDays(ctx); err != nil {
		t.Fatal(err)
	}
	got = append(got, wait(2)...)
	if got[2].body.Type != "policy_change_retracted" || got[1].body.ToClass != "MIXED" {
		t.Errorf("deliveries %+v; want the new change then the retraction", got)
	}
	for _, g := range got {
		t.Logf("event %s (%s): delivery delay from seen_at to the receiver's 2xx: %s", g.id, g.body.Type, g.at.Sub(g.body.SeenAt).Round(time.Microsecond))
	}
	select {
	case g := <-rc.arrived:
		t.Errorf("event %s delivered again", g.id)
	case <-time.After(200 * time.Millisecond):
	}
}
