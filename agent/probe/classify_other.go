//go:build !linux

package probe

import "syscall"

// dialErrnos are the errnos of a failed connect(2) whose meaning does not
// depend on the kernel. EACCES and EPERM are left out: only on Linux are
// they known to mean an ICMPv6 prohibition and a local firewall, and an
// unknown error is INCONCLUSIVE, never BLOCKED. (On Windows these constants
// are not what Winsock returns, so dial errors there are dial_error.)
var dialErrnos = []errnoFailure{
	{syscall.ECONNREFUSED, FailureConnectionRefused},
	{syscall.ECONNRESET, FailureConnectionReset},
	{syscall.EHOSTUNREACH, FailureHostUnreachable},
	{syscall.ENETUNREACH, FailureNetworkUnreachable},
	{syscall.ETIMEDOUT, FailureTimeout},
}
