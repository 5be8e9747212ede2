// Package sighting keeps the sessions a reference MTA saw (nonce, observed
// source, port, time) in a bounded in-memory queue until they are uploaded
// to the collector, which joins them to agents' results by nonce. When the
// queue is full the oldest sightings are dropped and counted: a flood of
// sessions must not grow the reference MTA without bound.
package sighting

import (
	"net/netip"
	"sync"
	"time"
)

// Sighting is one session in which an agent presented a nonce.
type Sighting struct {
	ID     string // UUIDv7
	Nonce  []byte
	Source netip.Addr
	Port   uint16
	Time   time.Time
	TLS    bool
}

// Queue is a bounded FIFO safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	buf     []Sighting
	head, n int
	dropped uint64
}

// NewQueue returns a queue holding at most capacity sightings.
func NewQueue(capacity int) *Queue {
	return &Queue{buf: make([]Sighting, max(capacity, 1))}
}

// Add appends s, dropping the oldest sighting when full.
func (q *Queue) Add(s Sighting) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.buf) {
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.dropped++
	}
	q.buf[(q.head+q.n)%len(q.buf)] = s
	q.n++
}

// Peek returns up to max of the oldest sightings without removing them; an
// uploader removes them with Remove once the collector acknowledged them.
func (q *Queue) Peek(max int) []Sighting {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Sighting, 0, min(max, q.n))
	for i := 0; i < q.n && i < max; i++ {
		out = append(out, q.buf[(q.head+i)%len(q.buf)])
	}
	return out
}

// Remove removes the sightings whose ids are in ids, wherever they are.
func (q *Queue) Remove(ids map[string]bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := 0
	for i := 0; i < q.n; i++ {
		s := q.buf[(q.head+i)%len(q.buf)]
		if ids[s.ID] {
			continue
		}
		q.buf[(q.head+kept)%len(q.buf)] = s
		kept++
	}
	for i := kept; i < q.n; i++ {
		q.buf[(q.head+i)%len(q.buf)] = Sighting{}
	}
	q.n = kept
}

// Len returns the number of queued sightings.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Dropped returns how many sightings were dropped because the queue was full.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}
