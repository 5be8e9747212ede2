package api

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/op25b/observatory/collector/asn"
)

// Spreader chooses the round offsets of agents so that those behind one
// /24 (IPv4) or /48 (IPv6), such as many volunteers behind a carrier-grade
// NAT, do not probe the reference MTAs together and trip their per-source
// limits. The agents it saw fetch their schedule from one prefix within
// TTL get offsets spread evenly over the interval, from a start that a
// hash of the prefix places, ordered by agent id: stable while the set is,
// and the same for every call. It remembers only what it saw itself, so
// each collector replica spreads the agents it serves; its memory is
// bounded by Max and by TTL. The zero value works.
type Spreader struct {
	// TTL is how long an agent counts after its last schedule fetch
	// (default 10 minutes; agents fetch every minute).
	TTL time.Duration
	// Max bounds the agents remembered (default 1<<20); agents beyond get
	// no offset, and derive their own.
	Max int
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu       sync.Mutex
	prefixes map[netip.Prefix]map[string]time.Time
	agents   int
	swept    time.Time
}

// Offset returns the round offset within interval of agentID, which
// fetches its schedule from addr, and records the fetch. It returns false
// when it cannot choose one (no address, no interval, memory full).
func (s *Spreader) Offset(agentID string, addr netip.Addr, interval time.Duration) (time.Duration, bool) {
	if !addr.IsValid() || interval <= 0 {
		return 0, false
	}
	ttl, limit, now := s.TTL, s.Max, time.Now()
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if limit <= 0 {
		limit = 1 << 20
	}
	if s.Now != nil {
		now = s.Now()
	}
	p := asn.PublicPrefix(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prefixes == nil {
		s.prefixes = map[netip.Prefix]map[string]time.Time{}
	}
	if now.Sub(s.swept) >= ttl {
		for q, seen := range s.prefixes {
			s.expire(q, seen, now.Add(-ttl))
		}
		s.swept = now
	}
	seen := s.prefixes[p]
	if seen == nil {
		seen = map[string]time.Time{}
	}
	s.expire(p, seen, now.Add(-ttl))
	if _, known := seen[agentID]; !known {
		if s.agents >= limit {
			return 0, false
		}
		s.agents++
	}
	seen[agentID] = now
	s.prefixes[p] = seen
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	i := slices.Index(ids, agentID)
	h := fnv.New64a()
	h.Write(p.Addr().AsSlice())
	start := time.Duration(h.Sum64() % uint64(interval))
	return (start + time.Duration(i)*interval/time.Duration(len(ids))) % interval, true
}

// expire forgets the agents of prefix p last seen before cutoff, and p
// when none is left.
func (s *Spreader) expire(p netip.Prefix, seen map[string]time.Time, cutoff time.Time) {
	for id, at := range seen {
		if at.Before(cutoff) {
			delete(seen, id)
			s.agents--
		}
	}
	if len(seen) == 0 {
		delete(s.prefixes, p)
	}
}
