package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FloodLine is what `op25b-chaos flood` prints: a line when its load is
// in place, a line when it ends.
type FloodLine struct {
	Event string       `json:"event"` // "ready" or "done"
	Idle  *IdleReport  `json:"idle,omitempty"`
	Flood *FloodReport `json:"flood,omitempty"`
}

// IdleReport is what an idle-connection flood did.
type IdleReport struct {
	Target string `json:"target"`
	Wanted int    `json:"wanted"`
	// Opened counts connections established; Served those that got an
	// HTTP response to their one request before going idle.
	Opened int `json:"opened"`
	Served int `json:"served"`
	// Open counts connections still open when the report was made;
	// ClosedByServer those the server closed while they idled.
	Open           int            `json:"open"`
	ClosedByServer int            `json:"closed_by_server"`
	Errors         map[string]int `json:"errors,omitempty"`
}

// Add adds the counts of b to r.
func (r *IdleReport) Add(b IdleReport) {
	r.Wanted += b.Wanted
	r.Opened += b.Opened
	r.Served += b.Served
	r.Open += b.Open
	r.ClosedByServer += b.ClosedByServer
	for k, v := range b.Errors {
		if r.Errors == nil {
			r.Errors = map[string]int{}
		}
		r.Errors[k] += v
	}
}

// Idle opens n connections to the HTTP server at target, concurrency at a
// time; on each it sends one keep-alive request for path and reads the
// answer, then leaves it idle. ready, if not nil, is called with the report
// once every connection was tried; Idle then holds them for hold (or until
// ctx ends), calls held, if not nil, with the report as it stands, closes
// them once held returns, and returns that report.
func Idle(ctx context.Context, target, path string, n, concurrency int, hold time.Duration, ready, held func(IdleReport)) IdleReport {
	rep := IdleReport{Target: target, Wanted: n, Errors: map[string]int{}}
	var (
		mu           sync.Mutex
		open, closed int // under mu
		served       atomic.Int64
		wg           sync.WaitGroup
		conns        []net.Conn
		opened       int
		sem          = make(chan struct{}, max(concurrency, 1))
		closing      atomic.Bool // we close them: the server did not
		watchers     sync.WaitGroup
		req          = "GET " + path + " HTTP/1.1\r\nHost: " + target + "\r\nUser-Agent: op25b-chaos\r\n\r\n"
		dialer       = net.Dialer{Timeout: 10 * time.Second}
		fail         = func(what string, err error) { mu.Lock(); rep.Errors[what+": "+ErrorClass(err)]++; mu.Unlock() }
	)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialer.DialContext(ctx, "tcp", target)
			if err != nil {
				fail("dial", err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			opened++
			open++
			mu.Unlock()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, req); err != nil {
				fail("request", err)
			} else if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
				fail("response", err)
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				served.Add(1)
			}
			c.SetDeadline(time.Time{})
			// Idle: a read returns only when the server closes it.
			watchers.Add(1)
			go func() {
				defer watchers.Done()
				var b [1]byte
				_, err := c.Read(b[:])
				mu.Lock()
				if err != nil && !closing.Load() {
					closed++
				}
				open--
				mu.Unlock()
			}()
		}()
	}
	wg.Wait()
	snapshot := func() IdleReport {
		mu.Lock()
		defer mu.Unlock()
		r := rep
		r.Errors = map[string]int{}
		for k, v := range rep.Errors {
			r.Errors[k] = v
		}
		r.Opened, r.Served, r.Open, r.ClosedByServer = opened, int(served.Load()), open, closed
		return r
	}
	if ready != nil {
		ready(snapshot())
	}
	select {
	case <-ctx.Done():
	case <-time.After(hold):
	}
	out := snapshot()
	if held != nil {
		held(out)
	}
	closing.Store(true)
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	watchers.Wait()
	return out
}

// FloodReport is what a request flood did.
type FloodReport struct {
	Base     string         `json:"base"`
	Seconds  float64        `json:"seconds"`
	Requests int            `json:"requests"`
	ByStatus map[int]int    `json:"by_status"`
	Errors   map[string]int `json:"errors,omitempty"`
}

// Served counts the requests answered with a status below 400.
func (r FloodReport) Served() int {
	n := 0
	for code, k := range r.ByStatus {
		if code < 400 {
			n += k
		}
	}
	return n
}

// Flood sends GET requests for paths, in turn, from concurrency workers
// over keep-alive connections to base (http://host:port) for d.
func Flood(ctx context.Context, base string, paths []string, concurrency int, d time.Duration) FloodReport {
	rep := FloodReport{Base: base, ByStatus: map[int]int{}, Errors: map[string]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	for w := range max(concurrency, 1) {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+paths[i%len(paths)], nil)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				rep.Requests++
				if err != nil {
					rep.Errors[ErrorClass(err)]++
				} else {
					rep.ByStatus[resp.StatusCode]++
				}
				mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	rep.Seconds = time.Since(began).Seconds()
	return rep
}

// ErrorClass names a network error by its cause (errno first, then
// timeouts), without addresses, so that errors add up by kind.
func ErrorClass(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.As(err, &errno):
		return strings.ToLower(errno.Error())
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// Summary renders counts by kind, largest first: "12 timeout, 3 other".
func Summary(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var s []kv
	for k, v := range m {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v || s[i].v == s[j].v && s[i].k < s[j].k })
	var parts []string
	for _, x := range s {
		parts = append(parts, fmt.Sprintf("%d %s", x.v, x.k))
	}
	return strings.Join(parts, ", ")
}
