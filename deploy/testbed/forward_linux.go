package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread moved into the named network namespace, so
// that the sockets fn makes belong to that namespace for good, then moves
// the thread back. A thread that cannot move back dies with its goroutine.
// Moving back matters: a thread left in a namespace, were it the main
// thread, would put the whole process in that namespace for `ip netns
// pids`, and teardown would kill it.
func inNetns(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("setns back from %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// dialInNetns connects to addr from inside the named network namespace.
func dialInNetns(ctx context.Context, ns, addr string) (c net.Conn, err error) {
	err = inNetns(ns, func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// forward accepts connections on ln (in the host's namespace) and relays
// each to addr inside namespace ns, until ctx is done: the pipeline's web
// page and dataset API, which listen on the collector namespace's loopback,
// become reachable from the host's browser.
func forward(ctx context.Context, ln net.Listener, ns, addr string, log *slog.Logger) {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dialInNetns(ctx, ns, addr)
			if err != nil {
				log.Warn("forwarding into the collector's namespace failed", "err", err)
				return
			}
			defer up.Close()
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, up)
		}()
	}
}
