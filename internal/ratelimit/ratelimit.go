// Package ratelimit bounds what one client may take: a token bucket per key
// (a source address, an agent), with which the reference MTA bounds
// sessions per source and the collector uploads per agent and requests per
// address, and a cap on the connections a listener keeps open, in all and
// per source (Listener). Buckets that have refilled are forgotten, so
// memory follows the set of recently active keys, not all keys ever seen.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Source is the client that per-address limits count: the IPv4 address
// (behind a carrier-grade NAT, one address is thousands of customers), or
// the IPv6 /64, since one customer holds at least a /64 and may use any
// address in it.
func Source(a netip.Addr) netip.Prefix {
	if a = a.Unmap(); a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// Limiter allows rate events per second per key, in bursts of burst.
type Limiter[K comparable] struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[K]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a Limiter; now is the clock (time.Now outside tests).
func New[K comparable](rate float64, burst int, now func() time.Time) *Limiter[K] {
	if now == nil {
		now = time.Now
	}
	return &Limiter[K]{rate: rate, burst: float64(max(burst, 1)), now: now, buckets: map[K]*bucket{}}
}

// Allow takes a token from k's bucket, and reports false when it is empty.
func (l *Limiter[K]) Allow(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(k)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refill returns k's bucket with the tokens it earned since it was last
// used, forgetting every bucket that is full again once a minute.
func (l *Limiter[K]) refill(k K) *bucket {
	now := l.now()
	if now.Sub(l.swept) > time.Minute {
		for key, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, key)
			}
		}
		l.swept = now
	}
	b := l.buckets[k]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	return b
}

// Ready reports whether k's bucket has a token, without taking it: for
// limits on events that are only known to count afterwards, such as failed
// authentications, which Charge then.
func (l *Limiter[K]) Ready(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets[k] == nil {
		return true // a full bucket, not worth keeping
	}
	return l.refill(k).tokens >= 1
}

// Charge takes a token from k's bucket even when it has none: the bucket
// then owes it, down to minus the burst, and is not Ready again until the
// debt is paid. So events that were Ready together, and all turned out to
// count, are paid for in full.
func (l *Limiter[K]) Charge(k K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(k)
	b.tokens = max(b.tokens-1, -l.burst)
}

// Len returns the number of keys with a bucket.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
