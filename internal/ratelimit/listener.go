package ratelimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Listener caps the connections a listener keeps open, in all and per
// source (Source), so that one client, or one listener's clients, cannot
// take every file descriptor of the process. A connection over a cap is
// closed as soon as it is accepted, without a byte, and counted; Accept
// goes on to the next one, so the server never sees it.
type Listener struct {
	net.Listener
	max, perSource int

	mu      sync.Mutex
	open    int
	sources map[netip.Prefix]int

	refusedAll, refusedSource atomic.Uint64
}

// NewListener caps ln at max connections open at once and perSource from
// one source; 0 leaves a cap off.
func NewListener(ln net.Listener, max, perSource int) *Listener {
	return &Listener{Listener: ln, max: max, perSource: perSource, sources: map[netip.Prefix]int{}}
}

// ListenerStats are a Listener's counts.
type ListenerStats struct {
	// Open is the connections open now.
	Open int
	// RefusedAll and RefusedSource count the connections closed at accept
	// because every slot was taken, or their source's were.
	RefusedAll, RefusedSource uint64
}

// Stats returns the listener's counts.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return ListenerStats{Open: open, RefusedAll: l.refusedAll.Load(), RefusedSource: l.refusedSource.Load()}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if l.admit(src) {
			return &conn{Conn: c, l: l, src: src}, nil
		}
		c.Close()
	}
}

func (l *Listener) admit(src netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.open >= l.max:
		l.refusedAll.Add(1)
		return false
	case l.perSource > 0 && l.sources[src] >= l.perSource:
		l.refusedSource.Add(1)
		return false
	}
	l.open++
	l.sources[src]++
	return true
}

func (l *Listener) release(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.sources[src]--; l.sources[src] <= 0 {
		delete(l.sources, src)
	}
}

func sourceOf(a net.Addr) netip.Prefix {
	if t, ok := a.(*net.TCPAddr); ok {
		return Source(t.AddrPort().Addr())
	}
	return netip.Prefix{} // not IP: all such connections are one source
}

// conn gives its slot back when it is closed, once.
type conn struct {
	net.Conn
	l    *Listener
	src  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}

// CloseWrite lets net/http close a connection gracefully (a TCP half
// close), as it does with the bare *net.TCPConn.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
