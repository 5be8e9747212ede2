package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/op25b/observatory/internal/ratelimit"
)

// The collector's HTTP server bounds how long a client may hold a
// connection at each step, so that idle or slow clients give their
// descriptors back (docs/operator.md, "Limits").
const (
	// ReadHeaderTimeout bounds the wait for a request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request (ours have no body);
	// WriteTimeout a request's handling, which an export extends batch by
	// batch.
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 30 * time.Second
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	IdleTimeout = 30 * time.Second
	// MaxHeaderBytes bounds a request's line and headers: no URL of ours
	// comes near it, and a megabyte of query gets 431.
	MaxHeaderBytes = 32 << 10
)

// NewServer returns the HTTP server of the collector's listener, with the
// timeouts and header bound above.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// LimitOptions tune a Limiter. The zero value of a field means its
// default.
type LimitOptions struct {
	// Rate is how many requests per second one client may make on average
	// (10), in bursts of Burst (40). A client is an IPv4 address or an IPv6
	// /64.
	Rate  float64
	Burst int
	// TrustProxy takes the client's address from the last X-Forwarded-For
	// entry, as appended by the reverse proxy in front of the collector.
	// Leave it off when clients connect directly: they could forge it.
	TrustProxy bool
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Limiter bounds the requests of each client of the collector's HTTP
// listener, whatever they ask: the web page, the API, static files,
// /healthz and /metrics. Over its rate a client gets 429 with Retry-After.
type Limiter struct {
	limit   *ratelimit.Limiter[netip.Prefix]
	retry   string // Retry-After, in seconds
	proxy   bool
	refused atomic.Uint64
}

// NewLimiter returns a Limiter.
func NewLimiter(o LimitOptions) *Limiter {
	if o.Rate <= 0 {
		o.Rate = 10
	}
	if o.Burst <= 0 {
		o.Burst = 40
	}
	return &Limiter{limit: ratelimit.New[netip.Prefix](o.Rate, o.Burst, o.Now),
		retry: strconv.Itoa(int(math.Ceil(1 / o.Rate))), proxy: o.TrustProxy}
}

// Refused returns how many requests were refused with 429.
func (l *Limiter) Refused() uint64 { return l.refused.Load() }

// Wrap returns h behind the limiter.
func (l *Limiter) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.limit.Allow(l.client(r)) {
			h.ServeHTTP(w, r)
			return
		}
		l.refused.Add(1)
		w.Header().Set("Retry-After", l.retry)
		if strings.HasPrefix(r.URL.Path, prefix+"/") {
			setAPIHeaders(w.Header())
			writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "too many requests: slow down")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, fmt.Sprintf("Too many requests from your address: try again in %s s.", l.retry), http.StatusTooManyRequests)
	})
}

// client is the rate limiter's key for r: its IPv4 address or IPv6 /64,
// since one IPv6 host can pick any address in its /64.
func (l *Limiter) client(r *http.Request) netip.Prefix {
	return ratelimit.Source(ClientAddr(r, l.proxy))
}
