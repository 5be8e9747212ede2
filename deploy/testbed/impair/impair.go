// Package impair makes an impaired link in user space: it copies IP packets
// between two devices (on Linux, two TUN devices, see OpenPair) and, in
// each direction, delays them by a fixed delay plus a random jitter (which
// lets packets overtake each other), drops them at random with a given
// probability, and drops what does not fit a bounded queue. It counts what
// it did, so that a test can report the loss and delay the link really had.
//
// The testbed needs it because the kernel it runs on has neither the netem
// qdisc nor nftables' queue expression. Random draws come from a seeded
// generator, one per direction; the sequence of packets a direction sees
// still depends on timing, so a seed makes runs alike, not identical.
package impair

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultQueue bounds the packets of one direction that are waiting out
// their delay when Shape.Queue is zero.
const DefaultQueue = 1000

// maxPacket is the largest packet read: a TUN device without offloads
// hands over one IP packet of at most its MTU, and IP packets are at most
// 64 KiB.
const maxPacket = 65535

// Shape is what the link does to the packets of one direction.
type Shape struct {
	// Delay is the fixed one-way delay; the round-trip time of a link
	// shaped alike both ways is twice that.
	Delay time.Duration `json:"delay"`
	// Jitter, if positive, adds to each packet's delay a uniform random
	// offset in [-Jitter, +Jitter] (the delay never goes below zero). A
	// packet whose draw is shorter overtakes those before it: jitter
	// reorders.
	Jitter time.Duration `json:"jitter"`
	// Loss is the probability that a packet is dropped, from 0 to 1.
	Loss float64 `json:"loss"`
	// Queue bounds the packets waiting out their delay; a packet that
	// finds it full is dropped (default DefaultQueue).
	Queue int `json:"queue"`
}

// Validate reports a shape that cannot be applied.
func (s Shape) Validate() error {
	switch {
	case s.Delay < 0, s.Jitter < 0:
		return fmt.Errorf("impair: delay %s and jitter %s must not be negative", s.Delay, s.Jitter)
	case !(s.Loss >= 0 && s.Loss <= 1):
		return fmt.Errorf("impair: loss %v must be between 0 and 1", s.Loss)
	case s.Queue < 0:
		return fmt.Errorf("impair: queue %d must not be negative", s.Queue)
	}
	return nil
}

// String describes the shape in the words of a scenario table, for
// example "delay 300ms ±10ms, loss 20%".
func (s Shape) String() string {
	var parts []string
	if s.Delay > 0 || s.Jitter > 0 {
		d := "delay " + s.Delay.String()
		if s.Jitter > 0 {
			d += " ±" + s.Jitter.String()
		}
		parts = append(parts, d)
	}
	if s.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %g%%", s.Loss*100))
	}
	if len(parts) == 0 {
		return "no impairment"
	}
	return strings.Join(parts, ", ")
}

// Device reads and writes whole IP packets, one per call, like a TUN
// device. Close must make a blocked Read return.
type Device interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// Stats is what one direction of a link did, as measured.
type Stats struct {
	Shape string `json:"shape"`
	// Received counts the packets read; each was then lost, dropped for
	// overflow, forwarded (written, successfully or not), or is still
	// queued (when the link stopped, in flight).
	Received    uint64 `json:"received"`
	Lost        uint64 `json:"lost"`
	Overflow    uint64 `json:"overflow"`
	Forwarded   uint64 `json:"forwarded"`
	Queued      uint64 `json:"queued,omitempty"`
	WriteErrors uint64 `json:"write_errors,omitempty"`
	// Delays of the forwarded packets, from read to write, in
	// milliseconds: percentiles at millisecond resolution.
	DelayP50MS float64 `json:"delay_p50_ms"`
	DelayP99MS float64 `json:"delay_p99_ms"`
	DelayMinMS float64 `json:"delay_min_ms"`
	DelayMaxMS float64 `json:"delay_max_ms"`
}

// LossRate is the share of received packets the link dropped, at random or
// for overflow.
func (s Stats) LossRate() float64 {
	if s.Received == 0 {
		return 0
	}
	return float64(s.Lost+s.Overflow) / float64(s.Received)
}

// Report is both directions of a link: Forward from the first device given
// to Run to the second, Reverse back.
type Report struct {
	Forward Stats `json:"forward"`
	Reverse Stats `json:"reverse"`
}

// Link is an impaired link; its Stats may be read while it runs.
type Link struct {
	fwd, rev *pipe
}

// NewLink returns a link shaping packets from a to b with ab and back
// with ba, its random draws seeded by seed.
func NewLink(ab, ba Shape, seed uint64) (*Link, error) {
	if err := errors.Join(ab.Validate(), ba.Validate()); err != nil {
		return nil, err
	}
	return &Link{fwd: newPipe(ab, seed, 1), rev: newPipe(ba, seed, 2)}, nil
}

// Run copies packets between a and b until ctx ends (then it returns nil)
// or reading a device fails. It closes both devices before it returns.
func (l *Link) Run(ctx context.Context, a, b Device) error {
	inner, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, d := range []struct {
		p        *pipe
		from, to Device
	}{{l.fwd, a, b}, {l.rev, b, a}} {
		wg.Go(func() { cancel(fmt.Errorf("impair: read: %w", d.p.read(d.from))) })
		wg.Go(func() { d.p.write(inner, d.to) })
	}
	<-inner.Done()
	a.Close()
	b.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return context.Cause(inner)
}

// Stats returns what the link did so far.
func (l *Link) Stats() Report {
	return Report{Forward: l.fwd.stats(), Reverse: l.rev.stats()}
}

// packet is one packet waiting out its delay.
type packet struct {
	due, arrived time.Time
	seq          uint64 // arrival order, which breaks ties of due
	data         []byte
}

type packetHeap []packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = packet{}
	*h = old[:len(old)-1]
	return p
}

// histBuckets bounds the delay histogram: one bucket per millisecond up
// to a minute, the last one holding everything longer.
const histBuckets = 60_000

// pipe is one direction of a link.
type pipe struct {
	shape Shape
	rng   *rand.Rand // used by read only
	wake  chan struct{}

	mu       sync.Mutex
	q        packetHeap
	seq      uint64
	st       Stats
	hist     []uint64
	min, max time.Duration
}

func newPipe(s Shape, seed, stream uint64) *pipe {
	if s.Queue == 0 {
		s.Queue = DefaultQueue
	}
	return &pipe{
		shape: s,
		rng:   rand.New(rand.NewPCG(seed, stream)),
		wake:  make(chan struct{}, 1),
		st:    Stats{Shape: s.String()},
		hist:  make([]uint64, histBuckets),
	}
}

// read queues what from delivers, until from fails.
func (p *pipe) read(from Device) error {
	buf := make([]byte, maxPacket)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		now := time.Now()
		p.mu.Lock()
		p.st.Received++
		switch {
		case p.shape.Loss > 0 && p.rng.Float64() < p.shape.Loss:
			p.st.Lost++
		case len(p.q) >= p.shape.Queue:
			p.st.Overflow++
		default:
			d := p.shape.Delay
			if j := p.shape.Jitter; j > 0 {
				d = max(0, d+time.Duration((2*p.rng.Float64()-1)*float64(j)))
			}
			heap.Push(&p.q, packet{due: now.Add(d), arrived: now, seq: p.seq, data: bytes.Clone(buf[:n])})
			p.seq++
		}
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// write sends queued packets to to when they are due, until ctx ends.
func (p *pipe) write(ctx context.Context, to Device) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		wait := time.Duration(-1)
		if len(p.q) > 0 {
			if wait = time.Until(p.q[0].due); wait <= 0 {
				pkt := heap.Pop(&p.q).(packet)
				p.mu.Unlock()
				_, err := to.Write(pkt.data)
				p.record(time.Since(pkt.arrived), err)
				continue
			}
		}
		p.mu.Unlock()
		var fire <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-fire:
		}
	}
}

func (p *pipe) record(d time.Duration, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Forwarded++
	if err != nil {
		p.st.WriteErrors++
	}
	if p.st.Forwarded == 1 || d < p.min {
		p.min = d
	}
	p.max = max(p.max, d)
	p.hist[min(int(d/time.Millisecond), histBuckets-1)]++
}

func (p *pipe) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Queued = uint64(len(p.q))
	st.DelayP50MS = p.percentile(0.50)
	st.DelayP99MS = p.percentile(0.99)
	st.DelayMinMS = ms(p.min)
	st.DelayMaxMS = ms(p.max)
	return st
}

// percentile returns the delay, in whole milliseconds, that a share q of
// the forwarded packets did not exceed.
func (p *pipe) percentile(q float64) float64 {
	n := p.st.Forwarded
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range p.hist {
		if seen += c; seen >= rank {
			return float64(i)
		}
	}
	return float64(histBuckets - 1)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteFile writes the report as JSON to path, atomically: a reader never
// sees half a report.
func (r Report) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("impair: stats: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("impair: stats: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("impair: stats: %w", err)
	}
	return nil
}

// ReadReport reads a report WriteFile wrote.
func ReadReport(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("impair: stats: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("impair: stats %s: %w", path, err)
	}
	return r, nil
}
