package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := New[string](2, 3, func() time.Time { return now })
	var got []bool
	for i := 0; i < 5; i++ {
		got = append(got, l.Allow("a"))
	}
	if want := []bool{true, true, true, false, false}; !equal(got, want) {
		t.Errorf("burst of 5 = %v; want %v", got, want)
	}
	if !l.Allow("b") {
		t.Errorf("another key is limited by the first one's bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if !l.Allow("a") || l.Allow("a") {
		t.Errorf("after 0.5 s at 2/s: want exactly one more event")
	}
	now = now.Add(2 * time.Minute)
	l.Allow("c") // sweeps the refilled buckets of a and b
	if n := l.Len(); n != 1 {
		t.Errorf("buckets after a sweep = %d; want 1", n)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRefund(t *testing.T) {
	now := time.Unix(0, 0)
	l := New[string](1, 2, func() time.Time { return now })
	l.Allow("a")
	l.Allow("a")
	if l.Allow("a") {
		t.Fatalf("third event within a burst of 2 allowed")
	}
	l.Refund("a")
	if !l.Allow("a") {
		t.Errorf("after a refund: want one more event")
	}
	l.Refund("a")
	l.Refund("a")
	l.Refund("a")
	if got := []bool{l.Allow("a"), l.Allow("a"), l.Allow("a")}; !equal(got, []bool{true, true, false}) {
		t.Errorf("refunds past the burst = %v; want the burst of 2 only", got)
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:ffff::3", "2001:db8:1:2::/64"},
	} {
		if got := Source(netip.MustParseAddr(tc.addr)).String(); got != tc.want {
			t.Errorf("Source(%s) = %s; want %s", tc.addr, got, tc.want)
		}
	}
}
