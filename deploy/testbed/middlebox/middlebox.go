// Package middlebox is the on-path equipment of the testbed's emulated ISPs
// (deploy/testbed): an ISP's own SMTP relay (Relay), a STARTTLS-stripping
// SMTP proxy (Stripper) and a TLS-intercepting proxy (MITM). Each one is the
// behaviour a verdict of docs/methodology.md exists to detect, so the
// testbed can check that the agent names it correctly.
//
// The proxies are reached through an nftables redirect in the ISP's
// namespace and find the destination the client meant with SO_ORIGINAL_DST
// (OriginalDst). They re-originate the connection from the ISP's own
// address, as such boxes do in the wild.
//
// Everything here faces test traffic only, but reads stay bounded (the
// internal/smtpwire limits) and every session has a deadline, so a stuck
// peer cannot hold a middlebox for longer than SessionTimeout.
package middlebox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Limits of every session a middlebox handles.
const (
	SessionTimeout = 60 * time.Second
	DialTimeout    = 5 * time.Second
)

// Handler serves one accepted client connection; it owns the connection and
// closes it before returning.
type Handler interface {
	Handle(ctx context.Context, c net.Conn)
}

// UpstreamFunc returns the address a client connection was meant for.
// OriginalDst is the real one; tests on loopback pass a fixed address.
type UpstreamFunc func(c net.Conn) (netip.AddrPort, error)

// Listen opens port on the IPv4 and the IPv6 wildcard address. Separate
// sockets (rather than one dual-stack socket) keep the family of each
// accepted connection plain, which SO_ORIGINAL_DST needs to pick its level.
func Listen(port uint16) ([]net.Listener, error) {
	p := strconv.Itoa(int(port))
	ln4, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", p))
	if err != nil {
		return nil, fmt.Errorf("middlebox: listen: %w", err)
	}
	ln6, err := net.Listen("tcp6", net.JoinHostPort("::", p))
	if err != nil {
		ln4.Close()
		return nil, fmt.Errorf("middlebox: listen: %w", err)
	}
	return []net.Listener{ln4, ln6}, nil
}

// Serve accepts connections on every listener and hands each to h until ctx
// is done; then it closes the listeners, waits for the sessions in flight
// (each bounded by SessionTimeout) and returns nil. An accept error other
// than the shutdown ends Serve with that error.
func Serve(ctx context.Context, lns []net.Listener, h Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		sessions sync.WaitGroup
		loops    sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, ln := range lns {
		loops.Add(1)
		go func() {
			defer loops.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("middlebox: accept: %w", err) })
						cancel()
					}
					return
				}
				sessions.Add(1)
				go func() {
					defer sessions.Done()
					// Shutdown closes the client side, which ends every
					// relay and dialog promptly instead of at the deadline.
					stop := context.AfterFunc(ctx, func() { c.Close() })
					defer stop()
					_ = c.SetDeadline(time.Now().Add(SessionTimeout))
					h.Handle(ctx, c)
				}()
			}
		}()
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	loops.Wait()
	sessions.Wait()
	return firstErr
}

// dialUpstream connects to where the client meant to go.
func dialUpstream(ctx context.Context, c net.Conn, upstream UpstreamFunc) (net.Conn, netip.AddrPort, error) {
	dst, err := upstream(c)
	if err != nil {
		return nil, dst, err
	}
	d := net.Dialer{Timeout: DialTimeout}
	up, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, dst, fmt.Errorf("dial upstream: %w", err)
	}
	_ = up.SetDeadline(time.Now().Add(SessionTimeout))
	return up, dst, nil
}

// copyFunc moves one direction of a session, possibly rewriting it. It
// returns nil when src ended cleanly.
type copyFunc func(dst io.Writer, src io.Reader) error

func plainCopy(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	return err
}

// splice relays client and server both ways until both directions end. A
// clean end of one direction is passed on as a half-close, because an SMTP
// client may close its side right after QUIT and still wait for the 221; an
// error (a reply a rewriter cannot parse, a reset) tears both sides down so
// that the other direction does not wait for its deadline.
func splice(log *slog.Logger, client, server net.Conn, up, down copyFunc) {
	var wg sync.WaitGroup
	pass := func(name string, dst, src net.Conn, f copyFunc) {
		defer wg.Done()
		if err := f(dst, src); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Debug("relay ended", "direction", name, "err", err)
			client.Close()
			server.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	wg.Add(2)
	go pass("client->server", server, client, up)
	go pass("server->client", client, server, down)
	wg.Wait()
	client.Close()
	server.Close()
}
