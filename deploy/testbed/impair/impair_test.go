package impair

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeDev is a device made of channels: what the test sends comes out of
// Read, and what the link writes is recorded with the time it arrived.
type fakeDev struct {
	in   chan []byte
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	written []stamped
	failW   bool
}

type stamped struct {
	at  time.Time
	seq uint32
}

func newFakeDev() *fakeDev {
	return &fakeDev{in: make(chan []byte), done: make(chan struct{})}
}

func (d *fakeDev) Read(p []byte) (int, error) {
	select {
	case b, ok := <-d.in:
		if !ok {
			return 0, errors.New("device gone")
		}
		return copy(p, b), nil
	case <-d.done:
		return 0, os.ErrClosed
	}
}

func (d *fakeDev) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.written = append(d.written, stamped{time.Now(), binary.BigEndian.Uint32(p)})
	if d.failW {
		return 0, errors.New("write refused")
	}
	return len(p), nil
}

func (d *fakeDev) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

func (d *fakeDev) got() []stamped {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.written)
}

// send delivers packet seq to the link through d, as the kernel would.
func (d *fakeDev) send(seq uint32) {
	var b [20]byte
	binary.BigEndian.PutUint32(b[:], seq)
	d.in <- b[:]
}

// start runs a link between two fake devices inside the current bubble.
func start(t *testing.T, ab, ba Shape, seed uint64) (l *Link, a, b *fakeDev, stop func() error) {
	t.Helper()
	l, err := NewLink(ab, ba, seed)
	if err != nil {
		t.Fatal(err)
	}
	a, b = newFakeDev(), newFakeDev()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, a, b) }()
	return l, a, b, func() error { cancel(); return <-done }
}

func TestDelayEachWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, a, b, stop := start(t, Shape{Delay: 300 * time.Millisecond}, Shape{Delay: 50 * time.Millisecond}, 1)
		t0 := time.Now()
		for i := range uint32(10) {
			a.send(i)
			b.send(100 + i)
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		for dev, want := range map[*fakeDev]struct {
			delay time.Duration
			first uint32
		}{b: {300 * time.Millisecond, 0}, a: {50 * time.Millisecond, 100}} {
			got := dev.got()
			if len(got) != 10 {
				t.Fatalf("%d packets arrived; want 10", len(got))
			}
			for i, g := range got {
				sent := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				if g.seq != want.first+uint32(i) || g.at.Sub(sent) != want.delay {
					t.Errorf("packet %d: seq %d after %s; want seq %d after %s", i, g.seq, g.at.Sub(sent), want.first+uint32(i), want.delay)
				}
			}
		}
		st := l.Stats()
		if st.Forward.Forwarded != 10 || st.Forward.DelayP50MS != 300 || st.Forward.DelayMaxMS != 300 ||
			st.Reverse.Forwarded != 10 || st.Reverse.DelayP99MS != 50 || st.Reverse.DelayMinMS != 50 {
			t.Errorf("Stats() = %+v; want 10 packets each way, 300 ms forward, 50 ms back", st)
		}
		if err := stop(); err != nil {
			t.Errorf("Run after cancel = %v; want nil", err)
		}
	})
}

func TestLossIsSeeded(t *testing.T) {
	const n = 10000
	run := func(seed uint64) (kept []uint32, st Stats) {
		synctest.Test(t, func(t *testing.T) {
			l, a, b, stop := start(t, Shape{Loss: 0.2}, Shape{}, seed)
			for i := range uint32(n) {
				a.send(i)
				time.Sleep(time.Microsecond) // a line, not a burst that fills the queue
			}
			synctest.Wait()
			for _, g := range b.got() {
				kept = append(kept, g.seq)
			}
			st = l.Stats().Forward
			stop()
		})
		return kept, st
	}
	kept, st := run(7)
	if st.Received != n || st.Lost+st.Forwarded != n || st.Queued != 0 || int(st.Forwarded) != len(kept) {
		t.Errorf("stats %+v with %d packets delivered; want %d received, each lost or forwarded", st, len(kept), n)
	}
	// 6 standard deviations of a binomial(10000, 0.2): 0.2 ± 0.024.
	if r := st.LossRate(); r < 0.176 || r > 0.224 {
		t.Errorf("loss rate %.4f; want 0.2 ± 0.024", r)
	}
	again, _ := run(7)
	if !slices.Equal(kept, again) {
		t.Errorf("the same seed dropped different packets")
	}
	other, _ := run(8)
	if slices.Equal(kept, other) {
		t.Errorf("seeds 7 and 8 dropped the same packets")
	}
}

func TestJitterReorders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shape := Shape{Delay: 100 * time.Millisecond, Jitter: 50 * time.Millisecond}
		l, a, b, stop := start(t, shape, shape, 3)
		sent := make(map[uint32]time.Time)
		for i := range uint32(200) {
			sent[i] = time.Now()
			a.send(i)
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := b.got()
		if len(got) != 200 {
			t.Fatalf("%d packets arrived; want 200", len(got))
		}
		reordered := 0
		for i, g := range got {
			if d := g.at.Sub(sent[g.seq]); d < 50*time.Millisecond || d > 150*time.Millisecond {
				t.Errorf("packet %d delayed %s; want 100ms ± 50ms", g.seq, d)
			}
			if i > 0 && g.seq < got[i-1].seq {
				reordered++
			}
		}
		if reordered == 0 {
			t.Errorf("no packet overtook another with 50 ms of jitter and 1 ms between packets")
		}
		if st := l.Stats().Forward; st.DelayMinMS < 50 || st.DelayMaxMS > 150 || st.DelayP50MS < 75 || st.DelayP50MS > 125 {
			t.Errorf("Stats() = %+v; want delays within 100 ± 50 ms, median near 100", st)
		}
		stop()
	})
}

func TestQueueOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, a, b, stop := start(t, Shape{Delay: time.Second, Queue: 5}, Shape{}, 1)
		for i := range uint32(8) {
			a.send(i)
		}
		time.Sleep(2 * time.Second)
		a.send(8) // the queue has drained: room again
		time.Sleep(2 * time.Second)
		synctest.Wait()
		var seqs []uint32
		for _, g := range b.got() {
			seqs = append(seqs, g.seq)
		}
		if want := []uint32{0, 1, 2, 3, 4, 8}; !slices.Equal(seqs, want) {
			t.Errorf("delivered %v; want %v", seqs, want)
		}
		if st := l.Stats().Forward; st.Overflow != 3 || st.Lost != 0 || st.Forwarded != 6 || st.LossRate() != 3.0/9 {
			t.Errorf("Stats() = %+v; want 3 overflows of 9", st)
		}
		stop()
	})
}

func TestRunEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, a, b, stop := start(t, Shape{}, Shape{}, 1)
		b.mu.Lock()
		b.failW = true
		b.mu.Unlock()
		a.send(1)
		synctest.Wait()
		if st := l.Stats().Forward; st.Forwarded != 1 || st.WriteErrors != 1 {
			t.Errorf("Stats() = %+v; want one forwarded packet with a write error", st)
		}
		close(a.in) // the device goes away
		synctest.Wait()
		err := stop()
		if err == nil {
			t.Errorf("Run after a read failure = nil; want the error")
		}
		select {
		case <-b.done:
		default:
			t.Errorf("Run returned without closing the other device")
		}
	})
}

func TestShape(t *testing.T) {
	for _, tc := range []struct {
		s    Shape
		str  string
		fine bool
	}{
		{Shape{}, "no impairment", true},
		{Shape{Delay: 300 * time.Millisecond, Jitter: 10 * time.Millisecond}, "delay 300ms ±10ms", true},
		{Shape{Delay: 750 * time.Millisecond, Loss: 0.1}, "delay 750ms, loss 10%", true},
		{Shape{Loss: 0.2}, "loss 20%", true},
		{Shape{Loss: 1.5}, "", false},
		{Shape{Delay: -time.Second}, "", false},
		{Shape{Queue: -1}, "", false},
	} {
		err := tc.s.Validate()
		if (err == nil) != tc.fine {
			t.Errorf("%+v.Validate() = %v; want error %v", tc.s, err, !tc.fine)
		}
		if tc.fine && tc.s.String() != tc.str {
			t.Errorf("%+v.String() = %q; want %q", tc.s, tc.s.String(), tc.str)
		}
	}
	if _, err := NewLink(Shape{}, Shape{Loss: -1}, 0); err == nil {
		t.Errorf("NewLink with a negative loss succeeded")
	}
}
