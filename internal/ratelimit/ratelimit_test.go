package ratelimit

import (
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
