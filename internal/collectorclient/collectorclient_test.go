package collectorclient

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for i, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		got := b.Next()
		if got < want/2 || got > want {
			t.Errorf("attempt %d: %v; want in [%v, %v]", i, got, want/2, want)
		}
	}
	b.Reset()
	if got := b.Next(); got > 100*time.Millisecond {
		t.Errorf("after Reset: %v; want at most 100ms", got)
	}
}

func TestPrincipalID(t *testing.T) {
	for in, want := range map[string]string{"agent-abc.s3cret": "agent-abc", "nodot": "nodot", "a.b.c": "a.b"} {
		if got := principalID(in); got != want {
			t.Errorf("principalID(%q) = %q; want %q", in, got, want)
		}
	}
}
