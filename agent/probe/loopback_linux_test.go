package probe

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/verdict"
	"github.com/op25b/observatory/refmta/refmtatest"
)

// Tests that need Linux loopback behaviour: the whole of 127.0.0.0/8, and
// a listen backlog that drops SYNs when full.

// blackhole returns a port on 127.0.0.1 whose SYNs go unanswered: a
// listener with a backlog of 0 that never accepts, filled up. Linux drops
// SYNs to a full accept queue, which is what a filtering firewall looks
// like from here.
func blackhole(t *testing.T) uint16 {
	t.Helper()
	testenv.Long(t, "waits for connection attempts to time out")
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i == 16 {
			testenv.Unavailable(t, "the accept queue never filled; cannot make a port that drops SYNs")
		}
	}
	return uint16(port)
}

func TestBlockedTimeout(t *testing.T) {
	hole := blackhole(t)
	tg := fakeRefMTA(t, "127.0.0.1", newKey(t), func(f *fakeMTA) {
		if f.served != nil {
			f.served = append(f.served, hole)
		}
	})
	tg.Ports = []Port{{Number: hole}}
	res, err := Round(t.Context(), fastConfig(), []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	check(t, res, want{verdict.BlockedTimeout, FailureTimeout})
	if d := res[0].Timings.Total; d < time.Second || d > 3*time.Second {
		t.Errorf("total = %v; want about the 1s timeout", d)
	}
	// Confirmed by a second attempt that dialled several connections at
	// once, so that random loss of SYNs cannot pass for a block.
	as := res[0].Attempts
	if len(as) != 2 || as[0].Dials != 1 || as[1].Dials != ConfirmDials || as[1].Verdict != verdict.BlockedTimeout {
		t.Errorf("attempts = %+v; want one dial, then %d at once, both BLOCKED_TIMEOUT", as, ConfirmDials)
	}
	if !strings.Contains(res[0].Detail, "confirmed") {
		t.Errorf("detail %q; want it to say the verdict was confirmed", res[0].Detail)
	}
}

// TestControlTimeoutShortensPorts: when the control port's SYNs go
// unanswered the line is likely offline; its ports get one short attempt
// each instead of the full budget again.
func TestControlTimeoutShortensPorts(t *testing.T) {
	tg := fakeRefMTA(t, "127.0.0.1", newKey(t), nil)
	tg.ControlPort = blackhole(t)
	tg.Ports = []Port{{Number: blackhole(t)}, tg.Ports[0]}
	cfg := Config{Timeout: 2 * ShortConnect, Backoff: 10 * time.Millisecond}
	start := time.Now()
	res, err := Round(t.Context(), cfg, []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	if d, bound := time.Since(start), cfg.Timeout+ShortConnect+time.Second; d > bound {
		t.Errorf("the round took %v; want at most the control's timeout and one short attempt, %v", d, bound)
	}
	check(t, res, want{verdict.Inconclusive, FailureTimeout}, want{verdict.Open, ""})
	if c := res[0].Control; c.Reached || c.Failure != FailureTimeout || c.Attempts != 1 {
		t.Errorf("control = %+v; want one attempt that timed out", c)
	}
	if as := res[0].Attempts; len(as) != 1 || as[0].Deadline != ShortConnect {
		t.Errorf("attempts = %+v; want one with the %v connect budget", as, ShortConnect)
	}
}

// proxy relays connections to 127.0.0.5:port to 127.0.0.1:port, dialling
// from source: a transparent proxy that re-originates the session.
func proxy(t *testing.T, port uint16, source string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.5", strconv.Itoa(int(port))))
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("cannot listen on 127.0.0.5:%d: %v", port, err))
	}
	t.Cleanup(func() { ln.Close() })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				in.Close()
				continue
			}
			go func() {
				io.Copy(out, in)
				out.Close()
			}()
			go func() {
				io.Copy(in, out)
				in.Close()
			}()
		}
	}()
}

func TestReoriginated(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	tg := refTarget(s)
	tg.Addr = netip.MustParseAddr("127.0.0.5")
	// The control session reaches the reference MTA from 127.0.0.1, the
	// SMTP sessions from 127.0.0.2, as through a proxy with its own
	// address.
	proxy(t, tg.ControlPort, "127.0.0.1")
	for _, p := range tg.Ports {
		proxy(t, p.Number, "127.0.0.2")
	}
	res := runRound(t, tg)
	bad := want{verdict.Intercepted, FailureReoriginated}
	check(t, res, bad, bad, bad)
	if src := res[0].Evidence.ObservedSource; src != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("observed source = %v; want 127.0.0.2", src)
	}
}
