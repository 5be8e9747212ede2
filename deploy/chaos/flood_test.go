package chaos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestIdle(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	var ready IdleReport
	var held IdleReport
	done := Idle(context.Background(), target, "/healthz", 40, 8, 0, func(r IdleReport) { ready = r }, func(r IdleReport) { held = r })
	if ready.Opened != 40 || ready.Served != 40 || ready.Open != 40 || len(ready.Errors) != 0 {
		t.Errorf("ready: %+v; want 40 opened, answered and open", ready)
	}
	if done.Open != 40 || done.ClosedByServer != 0 {
		t.Errorf("done: %+v; want 40 still open, none closed by the server", done)
	}
	if held.Open != 40 {
		t.Errorf("held: %+v; want the connections still open", held)
	}
}

// A server with an idle timeout closes the flood's connections: what
// Idle counts as closed by the server and as open adds up.
func TestIdleClosedByServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.IdleTimeout = 50 * time.Millisecond
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed && closed.Add(1) == 10 {
			cancel() // ends the hold
		}
	}
	srv.Start()
	defer srv.Close()
	rep := Idle(ctx, strings.TrimPrefix(srv.URL, "http://"), "/", 10, 10, time.Hour, nil, nil)
	if rep.Opened != 10 || rep.Served != 10 {
		t.Errorf("%+v; want 10 opened and answered", rep)
	}
	if rep.ClosedByServer+rep.Open != 10 {
		t.Errorf("%+v: closed by the server and open do not add up to the 10 opened", rep)
	}
}

func TestIdleUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep := Idle(context.Background(), addr, "/", 3, 3, 0, nil, nil)
	if rep.Opened != 0 || rep.Errors["dial: connection refused"] != 3 {
		t.Errorf("%+v; want 3 dials refused", rep)
	}
}

func TestFlood(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/limited" {
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	rep := Flood(context.Background(), srv.URL, []string{"/", "/limited"}, 4, 200*time.Millisecond)
	if rep.Requests == 0 || rep.ByStatus[200] == 0 || rep.ByStatus[429] == 0 {
		t.Errorf("%+v; want requests answered 200 and 429", rep)
	}
	if rep.Served() != rep.ByStatus[200] {
		t.Errorf("Served() = %d; want the 200s, %d", rep.Served(), rep.ByStatus[200])
	}
}

func TestErrorClass(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection refused"},
		{&net.OpError{Op: "accept", Err: syscall.EMFILE}, "too many open files"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("unexpected EOF"), "other"},
	} {
		if got := ErrorClass(c.err); got != c.want {
			t.Errorf("ErrorClass(%v) = %q; want %q", c.err, got, c.want)
		}
	}
}

func TestSummary(t *testing.T) {
	if got := Summary(map[string]int{"timeout": 3, "reset": 12, "other": 3}); got != "12 reset, 3 other, 3 timeout" {
		t.Errorf("Summary = %q", got)
	}
}
