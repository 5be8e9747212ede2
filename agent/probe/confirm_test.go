package probe

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/verdict"
)

// fastConfig is a round configuration for loopback tests: deadlines that
// fail fast, and repeats without the seconds of backoff a real path needs.
func fastConfig() Config {
	return Config{Timeout: time.Second, MaxTimeout: time.Second, Backoff: 10 * time.Millisecond}
}

func TestConclude(t *testing.T) {
	a := func(v verdict.Verdict, failure string) Attempt {
		return Attempt{Verdict: v, Failure: failure, Detail: v.String() + " detail"}
	}
	open := a(verdict.Open, "")
	bt := a(verdict.BlockedTimeout, FailureTimeout)
	br := a(verdict.BlockedReset, FailureConnectionRefused)
	icp := a(verdict.Intercepted, FailureProofMissing)
	stalled := a(verdict.Inconclusive, FailureDeadline)
	busy := a(verdict.Inconclusive, FailureRefMTABusy)
	for _, tc := range []struct {
		name     string
		attempts []Attempt
		need     int
		settled  bool
		verdict  verdict.Verdict
		failure  string
		decided  int
	}{
		{"open at once", []Attempt{open}, 2, true, verdict.Open, "", 0},
		{"open after a stall", []Attempt{stalled, open}, 2, true, verdict.Open, "", 1},
		{"open after a timeout", []Attempt{bt, open}, 2, true, verdict.Open, "", 1},
		{"a timeout alone is not yet a block", []Attempt{bt}, 2, false, verdict.Inconclusive, FailureUnconfirmed, 0},
		{"two timeouts block", []Attempt{bt, bt}, 2, true, verdict.BlockedTimeout, FailureTimeout, 1},
		{"timeout, stall, timeout", []Attempt{bt, stalled, bt}, 2, true, verdict.BlockedTimeout, FailureTimeout, 2},
		{"timeout, then refused", []Attempt{bt, br}, 2, false, verdict.Inconclusive, FailureUnconfirmed, 1},
		{"timeout, refused, stall", []Attempt{bt, br, stalled}, 2, false, verdict.Inconclusive, FailureUnconfirmed, 1},
		{"interception confirmed", []Attempt{icp, icp}, 2, true, verdict.Intercepted, FailureProofMissing, 1},
		{"interception once, then stalls", []Attempt{icp, stalled, stalled}, 2, false, verdict.Inconclusive, FailureUnconfirmed, 0},
		{"interception, then open", []Attempt{icp, open}, 2, true, verdict.Inconclusive, FailureInconsistent, 0},
		{"busy throughout", []Attempt{busy, busy, busy}, 2, false, verdict.Inconclusive, FailureRefMTABusy, 2},
		{"stall, then busy", []Attempt{stalled, busy}, 2, false, verdict.Inconclusive, FailureRefMTABusy, 1},
		{"busy, then open", []Attempt{busy, open}, 2, true, verdict.Open, "", 1},
		{"one attempt when confirmation is off", []Attempt{bt}, 1, true, verdict.BlockedTimeout, FailureTimeout, 0},
		{"port not served is final", []Attempt{a(verdict.Inconclusive, FailurePortNotServed)}, 2, true, verdict.Inconclusive, FailurePortNotServed, 0},
	} {
		if got := settled(tc.attempts, tc.need); got != tc.settled {
			t.Errorf("settled(%s) = %v; want %v", tc.name, got, tc.settled)
		}
		i, out := conclude(tc.attempts, tc.need)
		if out.verdict != tc.verdict || out.failure != tc.failure || i != tc.decided {
			t.Errorf("conclude(%s) = attempt %d, %v (%q): %s; want attempt %d, %v (%q)",
				tc.name, i, out.verdict, out.failure, out.detail, tc.decided, tc.verdict, tc.failure)
		}
	}
}

// TestStallIsRepeated: a session that stalls, as one on a lossy line
// does, is neither a block nor an interception; the repeat reaches the
// reference MTA, and the result keeps both attempts.
func TestStallIsRepeated(t *testing.T) {
	var stall atomic.Int32
	tg := fakeRefMTA(t, "127.0.0.1", newKey(t), func(f *fakeMTA) {
		if f.served == nil && !f.implicitTLS {
			stall.Store(1)
			f.stall = &stall
		}
	})
	tg.Ports = tg.Ports[:1]
	res, err := Round(context.Background(), fastConfig(), []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Verdict != verdict.Open || len(r.Attempts) != 2 || r.Decided != 1 {
		t.Fatalf("verdict %v (%s) after %d attempts, decided by %d; want OPEN by the second of 2", r.Verdict, r.Detail, len(r.Attempts), r.Decided)
	}
	first := r.Attempts[0]
	if first.Verdict != verdict.Inconclusive || first.Failure != FailureDeadline || first.Phase != PhaseGreeting {
		t.Errorf("first attempt = %v (%q) in phase %q; want INCONCLUSIVE (deadline) in the greeting", first.Verdict, first.Failure, first.Phase)
	}
	if bytes.Equal(first.Nonce, r.Attempts[1].Nonce) || !bytes.Equal(r.Nonce, r.Attempts[1].Nonce) {
		t.Errorf("nonces %x, %x, result %x; want a fresh one per attempt, the result's the deciding one's", first.Nonce, r.Attempts[1].Nonce, r.Nonce)
	}
	if r.Phase != PhaseDone || !r.Evidence.ProofValid {
		t.Errorf("result phase %q, evidence %+v; want the deciding attempt's", r.Phase, r.Evidence)
	}
}

// TestRefusedByReferenceMTA: our own signed refusal is INCONCLUSIVE
// (refmta_busy), never INTERCEPTED, and is answered with backoff.
func TestRefusedByReferenceMTA(t *testing.T) {
	tg := fakeRefMTA(t, "127.0.0.1", newKey(t), func(f *fakeMTA) { f.refuse = proof.RefusedRate })
	cfg := fastConfig()
	start := time.Now()
	res, err := Round(context.Background(), cfg, []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	// Two control attempts, then three per port, each after a backoff of
	// at least half of busyFactor times the base.
	if min := time.Duration(busyFactor) * cfg.Backoff / 2 * 2; time.Since(start) < min {
		t.Errorf("the round took %v; want the backoffs after a refusal, at least %v", time.Since(start), min)
	}
	for _, r := range res {
		if r.Verdict != verdict.Inconclusive || r.Failure != FailureRefMTABusy || len(r.Attempts) != DefaultAttempts {
			t.Errorf("port %d: %v (%q) after %d attempts: %s; want INCONCLUSIVE (refmta_busy) after %d",
				r.Port, r.Verdict, r.Failure, len(r.Attempts), r.Detail, DefaultAttempts)
		}
		if !strings.Contains(r.Detail, "signed") {
			t.Errorf("detail %q; want it to say the refusal is signed", r.Detail)
		}
		if c := r.Control; c.Reached || c.Failure != FailureRefMTABusy || c.Attempts != 2 {
			t.Errorf("control = %+v; want not reached, refmta_busy, after 2 attempts", c)
		}
	}
}

// TestRefusalOfAnotherNonce: a refusal signed for another nonce (a
// replay) is no refusal of this session.
func TestRefusalOfAnotherNonce(t *testing.T) {
	h := hello{code: 421, signed: true, proofErr: errOtherNonce,
		st: proof.Statement{Nonce: bytes.Repeat([]byte{1}, proof.NonceLen), Port: 25, Refused: proof.RefusedRate}}
	if r := h.refused(); r != "" {
		t.Errorf("refused() = %q for a statement of another nonce; want none", r)
	}
}

// TestAdaptiveDeadline: an attempt's deadline follows the path's
// round-trip time, between Timeout and MaxTimeout, so that a greeting that
// takes longer than Timeout on a slow path is still heard.
func TestAdaptiveDeadline(t *testing.T) {
	testenv.Long(t, "a reference MTA that greets after 1.2 s")
	key := newKey(t)
	tg := fakeRefMTA(t, "127.0.0.1", key, func(f *fakeMTA) { f.greetAfter = 1200 * time.Millisecond })
	r := newRunner(Config{Timeout: time.Second, MaxTimeout: 3 * time.Second})
	p := tg.Ports[0]
	fast := r.dialog(context.Background(), tg, p, newNonce(), time.Second, 0, 1)
	if fast.phase != PhaseGreeting || !isTimeout(fast.err) || fast.deadline != time.Second {
		t.Errorf("on a fast path: phase %q, err %v, deadline %v; want a stall in the greeting at the 1s floor", fast.phase, fast.err, fast.deadline)
	}
	slow := r.dialog(context.Background(), tg, p, newNonce(), time.Second, 100*time.Millisecond, 1)
	if slow.phase != PhaseDone || slow.deadline != 1600*time.Millisecond {
		t.Errorf("on a path with a 100ms round trip: phase %q (%v), deadline %v; want done within 16 round trips, 1.6s", slow.phase, slow.err, slow.deadline)
	}
	capped := r.dialog(context.Background(), tg, p, newNonce(), time.Second, time.Second, 1)
	if capped.deadline != 3*time.Second {
		t.Errorf("on a path with a 1s round trip: deadline %v; want the 3s ceiling", capped.deadline)
	}
}

func TestRoundBound(t *testing.T) {
	c := Config{Timeout: time.Second, MaxTimeout: 2 * time.Second, Attempts: 3, Backoff: 100 * time.Millisecond}
	// Control: 2 attempts of 2s and one busy backoff (at most 450ms);
	// ports: 3 attempts of 2s and busy backoffs of at most 450ms and 900ms.
	if got, want := c.RoundBound(), 4*time.Second+450*time.Millisecond+6*time.Second+1350*time.Millisecond; got != want {
		t.Errorf("RoundBound() = %v; want %v", got, want)
	}
	for i := 1; i <= 3; i++ {
		for _, busy := range []bool{false, true} {
			r := newRunner(c)
			for range 100 {
				if d := r.backoff(i, busy); d > maxBackoff(c.Backoff, i) || d < c.Backoff<<(i-1)/2 {
					t.Fatalf("backoff(%d, %v) = %v; want within [%v, %v]", i, busy, d, c.Backoff<<(i-1)/2, maxBackoff(c.Backoff, i))
				}
			}
		}
	}
	if d := (Config{}).RoundBound(); d > 4*time.Minute {
		t.Errorf("the default round bound is %v; want a round to end within minutes", d)
	}
}
