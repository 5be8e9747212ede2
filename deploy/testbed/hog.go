package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/op25b/observatory/internal/smtpwire"
)

// Hog holds every session slot of a reference MTA, so that it refuses
// whatever else connects: the saturated reference MTA of the refmta-busy
// scenario. It holds one plaintext SMTP session from each source address
// but the last, each after an EHLO the reference MTA accepted and kept
// alive by a NOOP now and then, and reconnects a session that ends. Once it
// holds them all, it checks from the last source that one more session is
// refused, and says it is ready.
//
// One source per session keeps each source's share of the reference MTA
// at one session, so that only the global limit is what refuses. The
// reference MTA must be started with as many session slots as the hog
// holds, and timeouts longer than the run.
type Hog struct {
	Addr    netip.AddrPort // a plaintext SMTP port of the reference MTA
	Sources []netip.Addr   // at least two
	// Ready is called once, when every slot is held and one more session
	// was refused.
	Ready func()
	Log   *slog.Logger
}

// Timing of the hog: how often a held session proves it is alive, and how
// long to wait before a new attempt.
const (
	hogKeepalive = 10 * time.Second
	hogRetry     = 200 * time.Millisecond
	hogIO        = 5 * time.Second
)

// errRefused is a session the reference MTA refused (421).
var errRefused = errors.New("refused")

// Run holds the sessions until ctx ends. It fails when the reference MTA
// accepts the session that should have been refused: it has more slots
// than the hog holds.
func (h *Hog) Run(ctx context.Context) error {
	if len(h.Sources) < 2 {
		return errors.New("hog: want at least two source addresses")
	}
	slots := h.Sources[:len(h.Sources)-1]
	var (
		mu   sync.Mutex
		held = make(map[netip.Addr]bool)
	)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, src := range slots {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := h.hold(ctx, src, func(on bool) {
					mu.Lock()
					held[src] = on
					mu.Unlock()
				})
				if ctx.Err() == nil {
					h.Log.Warn("session lost; reconnecting", "source", src, "err", err)
					sleep(ctx, hogRetry)
				}
			}
		})
	}
	check := h.Sources[len(h.Sources)-1]
	for ctx.Err() == nil {
		sleep(ctx, hogRetry)
		mu.Lock()
		all := len(held) == len(slots)
		for _, on := range held {
			all = all && on
		}
		mu.Unlock()
		if !all {
			continue
		}
		c, err := h.session(ctx, check)
		if errors.Is(err, errRefused) {
			h.Log.Info("holding every session; one more is refused", "sessions", len(slots))
			h.Ready()
			<-ctx.Done()
			return nil
		}
		if err == nil {
			c.Close()
			return fmt.Errorf("hog: %s accepted a session beyond the %d held: it has more slots than the hog holds", h.Addr, len(slots))
		}
		h.Log.Warn("checking that the reference MTA refuses", "err", err)
	}
	return nil
}

// hold opens a session from src and holds it until it fails or ctx ends;
// set reports whether it is held.
func (h *Hog) hold(ctx context.Context, src netip.Addr, set func(bool)) error {
	c, err := h.session(ctx, src)
	if err != nil {
		return err
	}
	defer c.Close()
	set(true)
	defer set(false)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	for {
		if !sleep(ctx, hogKeepalive) {
			return ctx.Err()
		}
		rep, err := command(c, r, "NOOP")
		if err != nil {
			return err
		}
		if rep.Code != 250 {
			return fmt.Errorf("hog: NOOP answered %q", rep.Text())
		}
	}
}

// session connects from src and says EHLO; it returns the connection when
// the reference MTA accepted the session, errRefused when it answered 421
// (before the banner or to the EHLO, as refusals may come), another error
// otherwise.
func (h *Hog) session(ctx context.Context, src netip.Addr) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: hogIO}
	c, err := d.DialContext(ctx, "tcp", h.Addr.String())
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(hogIO))
	banner, err := smtpwire.ReadReply(r)
	if err == nil && banner.Code == 220 {
		banner, err = command(c, r, "EHLO hog.testbed.invalid")
	}
	switch {
	case err != nil:
		c.Close()
		return nil, err
	case banner.Code == 421:
		c.Close()
		return nil, errRefused
	case banner.Code != 250:
		c.Close()
		return nil, fmt.Errorf("hog: unexpected reply %q", banner.Text())
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// command writes one command and reads its reply, within hogIO.
func command(c net.Conn, r *bufio.Reader, cmd string) (smtpwire.Reply, error) {
	c.SetDeadline(time.Now().Add(hogIO))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return smtpwire.Reply{}, err
	}
	return smtpwire.ReadReply(r)
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
