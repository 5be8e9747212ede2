package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/internal/verdict"
)

// Hostile servers: each must end inside the probe's deadline with a
// verdict, without panic and without growing the agent (methodology.md,
// "Bounded by construction"). These are correctness bounds, not
// performance claims.

const hostileTimeout = 2 * time.Second

// drain reads until the peer closes: a server that says nothing.
func drain(c net.Conn) { io.Copy(io.Discard, c) }

// tarpit sends its banner one byte every 10 s.
func tarpit(c net.Conn) {
	buf := make([]byte, 512)
	for _, b := range []byte("220 tarpit ESMTP\r\n") {
		if _, err := c.Write([]byte{b}); err != nil {
			return
		}
		// Wait 10 s, or less if the client closes.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); !isTimeout(err) {
			return
		}
	}
}

// greet sends a banner and reads the client's EHLO; it returns the nonce
// the EHLO carried.
func greet(c net.Conn) (*bufio.Reader, []byte, bool) {
	fmt.Fprintf(c, "220 hostile ESMTP\r\n")
	r := bufio.NewReader(c)
	line, err := smtpwire.ReadLine(r, smtpwire.MaxCommandLen)
	if err != nil {
		return nil, nil, false
	}
	_, arg := smtpwire.Command(line)
	n, _ := smtpwire.NonceFromEHLO(arg)
	return r, n, true
}

func endlessEHLO(c net.Conn) {
	if _, _, ok := greet(c); !ok {
		return
	}
	io.WriteString(c, "250-hostile greets you\r\n")
	line := []byte("250-X-MORE-AND-MORE\r\n")
	for {
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

func endlessBanner(c net.Conn) {
	line := []byte("220-welcome, and more\r\n")
	for {
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// hugeBanner is allocated once, before any memory is measured.
var hugeBanner = append(append([]byte("220 "), bytes.Repeat([]byte("A"), 10<<20)...), "\r\n"...)

func bigBanner(c net.Conn) { c.Write(hugeBanner) }

// garbageAfterSTARTTLS offers STARTTLS, says 220 to it and then sends
// random bytes instead of a TLS handshake. With key it signs a valid
// statement first; together sends the garbage in the same write as the
// 220.
func garbageAfterSTARTTLS(key ed25519.PrivateKey, together bool) func(net.Conn) {
	return func(c net.Conn) {
		r, nonce, ok := greet(c)
		if !ok {
			return
		}
		reply := "250-hostile\r\n250-STARTTLS\r\n250 HELP\r\n"
		if key != nil && nonce != nil {
			st := proof.Statement{Nonce: nonce, Source: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(),
				Port: c.LocalAddr().(*net.TCPAddr).AddrPort().Port(), Time: time.Now(), Capabilities: []string{"STARTTLS"}}
			reply = "250-hostile\r\n250-STARTTLS\r\n250 " + smtpwire.ProofKeyword + " " + proof.Sign(key, st) + "\r\n"
		}
		io.WriteString(c, reply)
		if line, err := smtpwire.ReadLine(r, smtpwire.MaxCommandLen); err != nil || line != "STARTTLS" {
			return
		}
		garbage := make([]byte, 64<<10)
		rand.Read(garbage)
		if together {
			c.Write(append([]byte("220 go ahead\r\n"), garbage...))
		} else {
			io.WriteString(c, "220 go ahead\r\n")
			time.Sleep(50 * time.Millisecond)
			c.Write(garbage)
		}
		drain(c)
	}
}

func closeAtOnce(c net.Conn) {}

func TestHostileServers(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name        string
		handle      func(net.Conn)
		controlDown bool
		want        verdict.Verdict
		failure     string
		maxAlloc    uint64 // bytes allocated by the whole round; 0: unchecked
	}{
		// A stall or a close after the connection is no evidence of who
		// answered: INCONCLUSIVE, with or without the control port.
		{"tarpit", tarpit, false, verdict.Inconclusive, FailureDeadline, 0},
		{"tarpit, control down", tarpit, true, verdict.Inconclusive, FailureDeadline, 0},
		{"endless 250- continuation", endlessEHLO, false, verdict.Intercepted, FailureProtocolError, 1 << 20},
		{"endless 220- continuation", endlessBanner, false, verdict.Intercepted, FailureProtocolError, 1 << 20},
		{"10 MB banner line", bigBanner, false, verdict.Intercepted, FailureProtocolError, 4 << 20},
		{"garbage after STARTTLS, no proof", garbageAfterSTARTTLS(nil, false), false, verdict.Intercepted, FailureProofMissing, 0},
		{"garbage after STARTTLS, valid proof", garbageAfterSTARTTLS(key, false), false, verdict.Tampered, FailureTLSFailed, 0},
		{"garbage with the STARTTLS reply, valid proof", garbageAfterSTARTTLS(key, true), false, verdict.Tampered, FailureTLSFailed, 0},
		{"silent", drain, false, verdict.Inconclusive, FailureDeadline, 0},
		{"silent, control down", drain, true, verdict.Inconclusive, FailureDeadline, 0},
		{"closes at once", closeAtOnce, false, verdict.Inconclusive, FailureConnectionLost, 0},
		{"closes at once, control down", closeAtOnce, true, verdict.Inconclusive, FailureConnectionLost, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.maxAlloc == 0 {
				// Memory is measured only in the serial subtests, which
				// run before these.
				t.Parallel()
			}
			tg := fakeRefMTA(t, "127.0.0.1", key, nil)
			tg.Ports = []Port{{Number: listen(t, "127.0.0.1", tc.handle).port}}
			if tc.controlDown {
				tg.ControlPort = closedPort(t, "127.0.0.1")
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			cfg := Config{Timeout: hostileTimeout, MaxTimeout: hostileTimeout, Backoff: 10 * time.Millisecond}
			res, err := Round(context.Background(), cfg, []Target{tg})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Round: %v", err)
			}
			if bound := cfg.RoundBound(); elapsed > bound {
				t.Errorf("Round took %v; want at most the documented bound %v", elapsed, bound)
			}
			r := res[0]
			if r.Verdict != tc.want || r.Failure != tc.failure {
				t.Errorf("verdict %v (%q): %s; want %v (%q)", r.Verdict, r.Failure, r.Detail, tc.want, tc.failure)
			}
			if r.Control.Reached == tc.controlDown {
				t.Errorf("control = %+v; want reached %v", r.Control, !tc.controlDown)
			}
			// Every attempt of a probe that is not OPEN is kept; a verdict
			// of a third party is confirmed by two.
			if n := len(r.Attempts); n < 2 || n > DefaultAttempts {
				t.Errorf("%d attempts; want 2 to %d", n, DefaultAttempts)
			}
			if n := len(r.Evidence.Banner); n > smtpwire.MaxBannerRecord {
				t.Errorf("banner evidence is %d bytes; want at most %d", n, smtpwire.MaxBannerRecord)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; tc.maxAlloc > 0 && alloc > tc.maxAlloc {
				t.Errorf("the round allocated %d bytes; want at most %d", alloc, tc.maxAlloc)
			}
			if strings.Contains(r.Detail, "127.0.0.1") {
				t.Errorf("detail %q carries an address", r.Detail)
			}
		})
	}
}
