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

func TestReadyAndCharge(t *testing.T) {
	now := time.Unix(0, 0)
	l := New[string](1, 2, func() time.Time { return now })
	if !l.Ready("a") || l.Len() != 0 {
		t.Fatalf("a new key: Ready %v with %d buckets; want ready and no bucket kept", l.Ready("a"), l.Len())
	}
	// Five events were ready at once and all counted: the bucket owes
	// three, down to minus the burst (two).
	for range 5 {
		l.Charge("a")
	}
	for i, want := range []bool{false, false, false, true} {
		if got := l.Ready("a"); got != want {
			t.Errorf("%d s after 5 charges on a burst of 2 at 1/s: Ready %v; want %v", i, got, want)
		}
		now = now.Add(time.Second)
	}
	if !l.Ready("b") {
		t.Errorf("another key is limited by the first one's charges")
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
