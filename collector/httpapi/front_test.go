package httpapi

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	clock := now
	h := NewLimiter(LimitOptions{Rate: 1, Burst: 2, Now: func() time.Time { return clock }}).Wrap(newHandler(&fake{}, Options{}))
	for i, tc := range []struct {
		remote string
		code   int
	}{
		{"192.0.2.7:40000", 200},
		{"192.0.2.7:40001", 200},
		{"192.0.2.7:40002", 429},
		{"192.0.2.8:40000", 200}, // another client
		{"[2001:db8:1:2::1]:40000", 200},
		{"[2001:db8:1:2::2]:40000", 200},
		{"[2001:db8:1:2:ffff::3]:40000", 429}, // same /64
		{"[2001:db8:1:3::1]:40000", 200},
		{"[::ffff:192.0.2.7]:40003", 429}, // the IPv4 client again
	} {
		w := do(h, request{target: "/api/v1/info", remote: tc.remote})
		if tc.code == 429 {
			checkError(t, tc.remote, w, 429, "RESOURCE_EXHAUSTED")
			if ra := w.Header().Get("Retry-After"); ra != "1" {
				t.Errorf("request %d from %s: Retry-After = %q; want 1", i, tc.remote, ra)
			}
			if w.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("request %d: a 429 without CORS headers hides itself from browsers", i)
			}
		} else if w.Code != tc.code {
			t.Errorf("request %d from %s = %d; want %d", i, tc.remote, w.Code, tc.code)
		}
	}
	clock = clock.Add(time.Second)
	if w := do(h, request{target: "/api/v1/info", remote: "192.0.2.7:40004"}); w.Code != 200 {
		t.Errorf("a second later = %d; want 200 (one token refilled)", w.Code)
	}
}

func TestRateLimitProxy(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	const proxy = "10.0.0.1:5000"

	h := NewLimiter(LimitOptions{Rate: 1, Burst: 1, TrustProxy: true}).Wrap(newHandler(&fake{}, Options{}))
	for i, tc := range []struct {
		header http.Header
		code   int
	}{
		{xff("203.0.113.5"), 200},
		{xff("203.0.113.6"), 200},
		{xff("198.51.100.1, 203.0.113.5"), 429}, // the proxy appends the last entry
		{xff("203.0.113.5, 198.51.100.1"), 200},
		{nil, 200}, // no header: the proxy itself
		{xff("not an address"), 429},
	} {
		if w := do(h, request{target: "/api/v1/info", remote: proxy, header: tc.header}); w.Code != tc.code {
			t.Errorf("TrustProxy request %d (%v) = %d; want %d", i, tc.header, w.Code, tc.code)
		}
	}

	h = NewLimiter(LimitOptions{Rate: 1, Burst: 1}).Wrap(newHandler(&fake{}, Options{}))
	do(h, request{target: "/api/v1/info", remote: proxy, header: xff("203.0.113.5")})
	if w := do(h, request{target: "/api/v1/info", remote: proxy, header: xff("203.0.113.6")}); w.Code != 429 {
		t.Errorf("without TrustProxy, a forged X-Forwarded-For got %d; want 429", w.Code)
	}
}

// TestLimiterCoversPages: a client over its rate gets 429 on any path,
// JSON under the API and text elsewhere, with Retry-After.
func TestLimiterCoversPages(t *testing.T) {
	h := NewLimiter(LimitOptions{Rate: 1, Burst: 1, Now: func() time.Time { return now }}).Wrap(http.NotFoundHandler())
	do(h, request{target: "/", remote: "192.0.2.7:1"})
	w := do(h, request{target: "/asn/64500", remote: "192.0.2.7:2"})
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("a page over the rate: %d %v; want 429, Retry-After 1, text", w.Code, w.Header())
	}
	checkError(t, "the API over the rate", do(h, request{target: "/api/v1/info", remote: "192.0.2.7:3"}), 429, "RESOURCE_EXHAUSTED")
}

// TestServerTimeouts: the collector's HTTP server lets no client hold a
// connection without a bound (issue 10: no idle timeout).
func TestServerTimeouts(t *testing.T) {
	s := NewServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 64<<10 {
		t.Errorf("server bounds: header %v, read %v, write %v, idle %v, %d header bytes; want every one set",
			s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
}

// TestExportOutlivesReadTimeout: the server's ReadTimeout bounds reading
// the request only: an export that runs for longer goes on (net/http
// clears the read deadline while a handler runs).
func TestExportOutlivesReadTimeout(t *testing.T) {
	f := &fake{block: make(chan struct{})}
	srv := NewServer(newHandler(f, Options{}))
	srv.ReadTimeout = 20 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(10 * srv.ReadTimeout) // the export waits for its first batch
		close(f.block)
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + exportMarch + "&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || strings.Count(string(body), "\n") != len(exportResults)+1 {
		t.Errorf("export past the ReadTimeout: %d, %d bytes, %v; want 200 and every row\n%s", resp.StatusCode, len(body), err, body)
	}
}
