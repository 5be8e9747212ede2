//go:build !linux

package testbed

import (
	"context"
	"log/slog"
	"net"
)

// forward is Linux-only, like the testbed: elsewhere it closes ln.
func forward(_ context.Context, ln net.Listener, _, _ string, log *slog.Logger) {
	log.Warn("forwarding into a network namespace needs Linux")
	ln.Close()
}
