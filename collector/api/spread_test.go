package api

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestSpreaderSpreadsOnePrefix(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s := &Spreader{TTL: 10 * time.Minute, Now: func() time.Time { return now }}
	const interval = 15 * time.Minute
	offsets := func(ids []string, addr func(i int) netip.Addr) []time.Duration {
		var out []time.Duration
		for i, id := range ids {
			off, ok := s.Offset(id, addr(i), interval)
			if !ok {
				t.Fatalf("Offset(%s) gave none", id)
			}
			out = append(out, off)
		}
		return out
	}
	nat := func(int) netip.Addr { return netip.MustParseAddr("198.51.100.7") }
	ids := []string{"agent-d", "agent-b", "agent-a", "agent-c"}
	offsets(ids, nat) // the first fetches: the set grows
	got := offsets(ids, nat)
	if !slices.Equal(got, offsets(ids, nat)) {
		t.Errorf("offsets changed between fetches with the same agents: %v", got)
	}
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	for i := range sorted {
		next := sorted[(i+1)%len(sorted)]
		if i == len(sorted)-1 {
			next += interval
		}
		if gap := next - sorted[i]; gap != interval/4 {
			t.Errorf("4 agents behind one address: offsets %v; want them %v apart", got, interval/4)
			break
		}
	}
	// Another address of the same /24 is the same prefix; each agent's
	// offset depends only on the set, not on the address it came from.
	if off, _ := s.Offset("agent-a", netip.MustParseAddr("198.51.100.200"), interval); off != got[2] {
		t.Errorf("agent-a from another address of its /24: %v; want %v", off, got[2])
	}
	// Agents that stop fetching are forgotten after TTL.
	now = now.Add(11 * time.Minute)
	offsets(ids[:3], nat)
	three := offsets(ids[:3], nat)
	if a, b := (three[0]-three[1]+interval)%interval, (three[1]-three[2]+interval)%interval; a == 0 || a%(interval/3) != 0 || b == 0 || b%(interval/3) != 0 {
		t.Errorf("after agent-c left: offsets %v; want thirds of %v", three, interval)
	}
	if n := s.agents; n != 3 {
		t.Errorf("remembers %d agents; want 3", n)
	}
	// IPv6 agents are grouped by /48.
	v6 := func(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:1:%x::1", i)) }
	offsets([]string{"x", "y"}, v6)
	six := offsets([]string{"x", "y"}, v6)
	if d := (six[0] - six[1] + interval) % interval; d != interval/2 {
		t.Errorf("2 agents in one /48: %v; want half an interval apart", six)
	}
}

func TestSpreaderBounds(t *testing.T) {
	s := &Spreader{Max: 2}
	addr := netip.MustParseAddr("192.0.2.1")
	for _, id := range []string{"a", "b"} {
		if _, ok := s.Offset(id, addr, time.Hour); !ok {
			t.Fatalf("Offset(%s) gave none below the limit", id)
		}
	}
	if _, ok := s.Offset("c", netip.MustParseAddr("203.0.113.1"), time.Hour); ok {
		t.Errorf("a third agent got an offset beyond Max = 2")
	}
	if _, ok := s.Offset("a", addr, time.Hour); !ok {
		t.Errorf("an agent already known lost its offset when memory is full")
	}
	if _, ok := s.Offset("a", netip.Addr{}, time.Hour); ok {
		t.Errorf("an agent without an address got an offset")
	}
	if _, ok := s.Offset("a", addr, 0); ok {
		t.Errorf("a schedule without interval got an offset")
	}
}
