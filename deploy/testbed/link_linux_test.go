package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/op25b/observatory/deploy/testbed/impair"
)

// The two ends of the test link: a and b, each with one address per
// family.
var linkAddrs = map[string][2]string{
	"IPv4": {"192.0.2.1", "192.0.2.2"},
	"IPv6": {"2001:db8::1", "2001:db8::2"},
}

// testLink is an impaired link between two namespaces of a run of their
// own, made by the real `op25b-testbed impair`, with echo servers (UDP and
// TCP, port 7, both families) in b.
type testLink struct {
	a, b  string
	proc  *child
	stats string
}

// newTestLink makes the namespaces, the link (shaped alike both ways) and
// the echo servers; t's clean-up removes them.
func newTestLink(t *testing.T, bin string, shape impair.Shape) *testLink {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A run lock of its own: a concurrent testbed run's sweep leaves the
	// namespaces alone, and removes them if this test is killed.
	lock, id, err := newRun()
	if err != nil {
		t.Fatal(err)
	}
	l := &testLink{a: nsName(id, "link-a"), b: nsName(id, "link-b")}
	dir := t.TempDir()
	l.stats = filepath.Join(dir, "stats.json")
	t.Cleanup(func() {
		if l.proc != nil {
			l.proc.stop()
		}
		if err := removeNamespaces(context.Background(), []string{l.a, l.b}, log); err != nil {
			t.Error(err)
		}
		lock.release()
	})
	for _, ns := range []string{l.a, l.b} {
		if err := addNamespace(ctx, ns, false); err != nil {
			t.Fatal(err)
		}
	}
	ready := filepath.Join(dir, "ready")
	l.proc, err = startChild("impair", log, "ip", "netns", "exec", l.a, filepath.Join(bin, TestbedBin), "impair",
		"--dev", "t0", "--peer-netns", l.b, "--peer-dev", "t1", "--seed", "9",
		"--delay", shape.Delay.String(), "--jitter", shape.Jitter.String(), "--loss", strconv.FormatFloat(shape.Loss, 'g', -1, 64),
		"--stats", l.stats, "--ready", ready)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.proc.waitFor(ctx, startTimeout, "its TUN devices", fileExists(ready)); err != nil {
		t.Fatal(err)
	}
	var cfgA, cfgB []string
	for fam, ends := range linkAddrs {
		plen := "/30"
		if fam == "IPv6" {
			plen = "/64 nodad"
		}
		cfgA = append(cfgA, "addr add "+ends[0]+plen+" dev t0")
		cfgB = append(cfgB, "addr add "+ends[1]+plen+" dev t1")
	}
	err = runSteps(ctx, []step{
		{args: ipBatch(l.a), stdin: lines(append([]string{"link set lo up", "link set t0 up"}, cfgA...)...)},
		{args: ipBatch(l.b), stdin: lines(append([]string{"link set lo up", "link set t1 up"}, cfgB...)...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var udp net.PacketConn
	var tcp net.Listener
	if err := inNetns(l.b, func() (err error) {
		if udp, err = net.ListenPacket("udp", ":7"); err != nil {
			return err
		}
		tcp, err = net.Listen("tcp", ":7")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(buf[:n], from)
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l
}

// report stops the link, which writes its final counters, and reads them.
func (l *testLink) report(t *testing.T) impair.Report {
	t.Helper()
	l.proc.stop()
	r, err := impair.ReadReport(l.stats)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dialUDP makes a UDP socket in a, connected to port of b over family fam.
func (l *testLink) dialUDP(t *testing.T, fam, port string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := inNetns(l.a, func() (err error) {
		c, err = net.Dial("udp", net.JoinHostPort(linkAddrs[fam][1], port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// udpEchoes sends n datagrams from a to b's UDP echo server over family
// fam, one at a time, each waiting up to wait for its echo, and returns
// the round-trip times of those that came back.
func (l *testLink) udpEchoes(t *testing.T, fam string, n int, wait time.Duration) []time.Duration {
	t.Helper()
	c := l.dialUDP(t, fam, "7")
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 64)
	for i := range uint32(n) {
		msg := binary.BigEndian.AppendUint32(nil, i)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(start.Add(wait))
		for {
			m, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // lost
			}
			if err != nil {
				t.Fatal(err)
			}
			if m == 4 && binary.BigEndian.Uint32(buf) == i {
				rtts = append(rtts, time.Since(start))
				break
			} // a late echo of an earlier datagram: keep waiting for ours
		}
	}
	return rtts
}

// udpBurst sends n datagrams from a to b's UDP echo server over family
// fam, half a millisecond apart, and counts the distinct ones echoed back.
func (l *testLink) udpBurst(t *testing.T, fam string, n int) int {
	t.Helper()
	c := l.dialUDP(t, fam, "7")
	defer c.Close()
	go func() {
		for i := range uint32(n) {
			c.Write(binary.BigEndian.AppendUint32(nil, i))
			time.Sleep(500 * time.Microsecond)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
	}()
	seen := make(map[uint32]bool)
	buf := make([]byte, 64)
	for {
		m, err := c.Read(buf)
		if err != nil {
			return len(seen)
		}
		if m == 4 {
			seen[binary.BigEndian.Uint32(buf)] = true
		}
	}
}

// tcpConnects opens n TCP connections from a to b over family fam and
// returns their connect times.
func (l *testLink) tcpConnects(t *testing.T, fam string, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range n {
		start := time.Now()
		c, err := dialInNetns(t.Context(), l.a, net.JoinHostPort(linkAddrs[fam][1], "7"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Since(start))
		c.Close()
	}
	return out
}

// tcpTransfer sends size random bytes through b's TCP echo server over
// family fam and checks that they all come back intact.
func (l *testLink) tcpTransfer(t *testing.T, fam string, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := dialInNetns(ctx, l.a, net.JoinHostPort(linkAddrs[fam][1], "7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	data := make([]byte, size)
	rand.Read(data)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("%s: %d of %d bytes came back over TCP (equal: %v), err %v", fam, len(got), size, bytes.Equal(got, data), err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestImpairedLink measures, over real TCP and UDP in both families, that
// an impaired link delays and drops as asked. The bounds are the ones that
// hold by construction (a packet is never forwarded before its least
// delay) or lie six standard deviations out (loss), with generous room
// above for a loaded machine.
func TestImpairedLink(t *testing.T) {
	needTestbed(t)
	bin := buildBinaries(t, "deploy/testbed/cmd/op25b-testbed")

	t.Run("delay", func(t *testing.T) {
		shape := impair.Shape{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond}
		l := newTestLink(t, bin, shape)
		least := 2 * (shape.Delay - shape.Jitter) // each way
		most := 2*(shape.Delay+shape.Jitter) + 150*time.Millisecond
		for fam := range linkAddrs {
			rtts := l.udpEchoes(t, fam, 20, 2*time.Second)
			if len(rtts) != 20 {
				t.Errorf("%s: %d of 20 UDP echoes came back over a link without loss", fam, len(rtts))
			}
			conns := l.tcpConnects(t, fam, 10)
			for what, ds := range map[string][]time.Duration{"UDP echo": rtts, "TCP connect": conns} {
				if lo := slices.Min(ds); lo < least {
					t.Errorf("%s %s: shortest round trip %s; the link delays at least %s", fam, what, lo, least)
				}
				if m := median(ds); m > most {
					t.Errorf("%s %s: median round trip %s; want about %s", fam, what, m, 2*shape.Delay)
				}
				t.Logf("%s %s: median round trip %s (asked %s ± %s)", fam, what, median(ds), 2*shape.Delay, 2*shape.Jitter)
			}
		}
		r := l.report(t)
		for dir, st := range map[string]impair.Stats{"forward": r.Forward, "reverse": r.Reverse} {
			if st.Lost+st.Overflow != 0 || st.Forwarded < 60 {
				t.Errorf("%s: %+v; want every packet of the test forwarded", dir, st)
			}
			if st.DelayMinMS < 90 || st.DelayP50MS > 160 {
				t.Errorf("%s: one-way delay min %.1f ms, median %.0f ms; want 100 ms ± 10", dir, st.DelayMinMS, st.DelayP50MS)
			}
		}
	})

	t.Run("loss", func(t *testing.T) {
		shape := impair.Shape{Loss: 0.2}
		l := newTestLink(t, bin, shape)
		const n = 1500
		echoed := 0
		for fam := range linkAddrs {
			// An echo needs both ways: (1-0.2)² = 0.64 of them come back.
			got := l.udpBurst(t, fam, n)
			echoed += got
			if r := float64(got) / n; r < 0.56 || r > 0.72 {
				t.Errorf("%s: %d of %d UDP echoes came back (%.3f); want 0.64 ± 0.08", fam, got, n, r)
			}
			t.Logf("%s: %d of %d UDP echoes came back (%.3f; asked 0.8² = 0.64)", fam, got, n, float64(got)/n)
			l.tcpTransfer(t, fam, 64<<10)
		}
		r := l.report(t)
		// The 3,000 datagrams went forward, about 2,400 came back; six
		// standard deviations of the loss of 2,000 packets are ±0.054.
		for dir, st := range map[string]impair.Stats{"forward": r.Forward, "reverse": r.Reverse} {
			if st.Received < 2000 || st.Overflow != 0 {
				t.Errorf("%s: %+v; want every test packet counted, none dropped for overflow", dir, st)
			}
			if lr := st.LossRate(); lr < 0.146 || lr > 0.254 {
				t.Errorf("%s: the link counted a loss rate of %.3f; want 0.2 ± 0.054", dir, lr)
			}
			t.Logf("%s: %.1f%% of %d packets lost", dir, 100*st.LossRate(), st.Received)
		}
		// What came back went through the link both ways: the link cannot
		// have forwarded less.
		if r.Reverse.Forwarded < uint64(echoed) {
			t.Errorf("%d echoes came back, the link forwarded %d packets back", echoed, r.Reverse.Forwarded)
		}
	})

	t.Run("jitter reorders", func(t *testing.T) {
		l := newTestLink(t, bin, impair.Shape{Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond})
		for fam := range linkAddrs {
			var c net.Conn
			var srv net.PacketConn
			if err := inNetns(l.b, func() (err error) {
				srv, err = net.ListenPacket("udp", net.JoinHostPort(linkAddrs[fam][1], "9"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			c = l.dialUDP(t, fam, "9")
			for i := range uint32(200) {
				c.Write(binary.BigEndian.AppendUint32(nil, i))
				time.Sleep(time.Millisecond)
			}
			var order []uint32
			buf := make([]byte, 64)
			srv.SetReadDeadline(time.Now().Add(2 * time.Second))
			for len(order) < 200 {
				n, _, err := srv.ReadFrom(buf)
				if err != nil {
					break
				}
				if n == 4 {
					order = append(order, binary.BigEndian.Uint32(buf))
				}
			}
			c.Close()
			srv.Close()
			if len(order) != 200 {
				t.Errorf("%s: %d of 200 datagrams arrived", fam, len(order))
			}
			if slices.IsSorted(order) {
				t.Errorf("%s: 200 datagrams 1 ms apart with ±15 ms of jitter arrived in order", fam)
			}
		}
	})
}
