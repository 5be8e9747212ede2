// Package testenv decides what a test does when this machine cannot run it:
// on a developer's machine it skips with the reason; in CI, where
// OP25B_REQUIRE_ALL=1, a skip would hide a suite that never ran, so it
// fails instead.
package testenv

import (
	"net"
	"os"
	"testing"
	"time"
)

// RequireAll reports whether every suite must run (OP25B_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("OP25B_REQUIRE_ALL") == "1" }

// Unavailable skips t with reason, or fails it under OP25B_REQUIRE_ALL=1.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("cannot run, and OP25B_REQUIRE_ALL=1 forbids skipping: %s", reason)
	}
	t.Skip(reason)
}

// Integration skips t under go test -short, the unit tier: what names the
// real part t needs (PostgreSQL, a browser, network namespaces) that makes
// it an integration test. make test runs without -short, so it runs them
// all (and OP25B_REQUIRE_ALL=1 does not turn this skip into a failure:
// -short asks for it).
func Integration(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test (needs %s): go test -short runs the unit tier only", what)
	}
}

// Long skips t under go test -short: why says what takes it seconds (real
// timeouts, processes killed and restarted).
func Long(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("takes seconds (%s): go test -short runs the unit tier only", why)
	}
}

// NeedRoot stops t unless it runs as root (network namespaces, nftables).
func NeedRoot(t testing.TB) {
	t.Helper()
	Integration(t, "root, network namespaces and nftables")
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root to build network namespaces and nftables rules (run: sudo make test)")
	}
}

// NeedIPv6Loopback stops t unless [::1] can be bound.
func NeedIPv6Loopback(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		Unavailable(t, "no IPv6 loopback on this host: "+err.Error())
		return
	}
	ln.Close()
}

// WaitFor polls ok until it holds, and fails t when limit passes first,
// saying what it waited for.
func WaitFor(t testing.TB, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	poll := min(max(limit/200, 10*time.Millisecond), 100*time.Millisecond)
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(poll)
	}
}
