// Package ratelimit is a token bucket per key (a source address, an agent):
// the reference MTA bounds sessions per source with it and the collector
// bounds uploads per agent. Buckets that have refilled are forgotten, so
// memory follows the set of recently active keys, not all keys ever seen.
package ratelimit

import (
	"sync"
	"time"
)

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
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len returns the number of keys with a bucket.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
