package probe

import (
	"errors"
	"runtime"
	"syscall"
)

// What a platform's kernel reports when a TCP connection fails, as data:
// the agent runs on Linux, Windows, macOS and FreeBSD, the numbers differ
// between them (and Go's syscall constants on Windows are not what Winsock
// returns), and a test on Linux checks every platform's table case by case
// (errnos_test.go). An error outside its platform's table is dial_error:
// INCONCLUSIVE, never BLOCKED.

// errnoFailure maps one errno to its failure class.
type errnoFailure struct {
	errno   syscall.Errno
	name    string // the C name, for docs and test messages
	failure string
}

// platformErrnos is one platform's table.
type platformErrnos struct {
	// dial: the errnos of a failed connect and their failure class.
	dial []errnoFailure
	// lost: errnos that, once connected, mean the connection was closed or
	// reset under the dialog (FailureConnectionLost).
	lost []syscall.Errno
	// stalled: errnos that, once connected, mean the kernel gave up on an
	// unanswered connection (FailureDeadline, like our own deadline).
	stalled []syscall.Errno
}

// errnoTables are the tables by GOOS.
var errnoTables = map[string]platformErrnos{
	// Linux reports ICMPv6 "administratively prohibited" (and policy or
	// reject-route failures) as EACCES, and a packet dropped by a local
	// netfilter rule as EPERM.
	"linux": {
		dial: []errnoFailure{
			{111, "ECONNREFUSED", FailureConnectionRefused},
			{104, "ECONNRESET", FailureConnectionReset},
			{113, "EHOSTUNREACH", FailureHostUnreachable},
			{101, "ENETUNREACH", FailureNetworkUnreachable},
			{13, "EACCES", FailureAdminProhibited},
			{1, "EPERM", FailureLocalFirewall},
			{110, "ETIMEDOUT", FailureTimeout},
		},
		lost:    []syscall.Errno{104, 103, 32}, // ECONNRESET, ECONNABORTED, EPIPE
		stalled: []syscall.Errno{110},          // ETIMEDOUT
	},
	// Windows: Winsock's codes, and the Win32 codes that overlapped
	// ConnectEx can report for the same events. Windows retries a SYN
	// answered by an ICMP error and then reports host or network
	// unreachable; an ICMP "administratively prohibited" cannot be told
	// from "host unreachable" there. Windows Firewall refusing an outgoing
	// connection is WSAEACCES.
	"windows": {
		dial: []errnoFailure{
			{10061, "WSAECONNREFUSED", FailureConnectionRefused},
			{1225, "ERROR_CONNECTION_REFUSED", FailureConnectionRefused},
			{10054, "WSAECONNRESET", FailureConnectionReset},
			{10065, "WSAEHOSTUNREACH", FailureHostUnreachable},
			{1232, "ERROR_HOST_UNREACHABLE", FailureHostUnreachable},
			{10051, "WSAENETUNREACH", FailureNetworkUnreachable},
			{1231, "ERROR_NETWORK_UNREACHABLE", FailureNetworkUnreachable},
			{10013, "WSAEACCES", FailureLocalFirewall},
			{10060, "WSAETIMEDOUT", FailureTimeout},
			{121, "ERROR_SEM_TIMEOUT", FailureTimeout},
		},
		// WSAECONNRESET, WSAECONNABORTED, WSAESHUTDOWN, ERROR_NETNAME_DELETED,
		// ERROR_CONNECTION_ABORTED, ERROR_BROKEN_PIPE
		lost:    []syscall.Errno{10054, 10053, 10058, 64, 1236, 109},
		stalled: []syscall.Errno{10060, 121}, // WSAETIMEDOUT, ERROR_SEM_TIMEOUT
	},
	// macOS: BSD numbers. ICMP "administratively prohibited" is reported
	// as EHOSTUNREACH. EACCES and EPERM are left out: a local pf rule or an
	// application firewall is not told apart from other causes there.
	// EPROTOTYPE is what macOS returns for a write racing the peer's close.
	"darwin": {
		dial: []errnoFailure{
			{61, "ECONNREFUSED", FailureConnectionRefused},
			{54, "ECONNRESET", FailureConnectionReset},
			{65, "EHOSTUNREACH", FailureHostUnreachable},
			{51, "ENETUNREACH", FailureNetworkUnreachable},
			{60, "ETIMEDOUT", FailureTimeout},
		},
		lost:    []syscall.Errno{54, 53, 32, 41}, // ECONNRESET, ECONNABORTED, EPIPE, EPROTOTYPE
		stalled: []syscall.Errno{60},             // ETIMEDOUT
	},
	// FreeBSD: BSD numbers. ICMP "administratively prohibited" is
	// reported as EHOSTUNREACH; a packet refused by a local ipfw or pf
	// rule on output is EACCES.
	"freebsd": {
		dial: []errnoFailure{
			{61, "ECONNREFUSED", FailureConnectionRefused},
			{54, "ECONNRESET", FailureConnectionReset},
			{65, "EHOSTUNREACH", FailureHostUnreachable},
			{51, "ENETUNREACH", FailureNetworkUnreachable},
			{13, "EACCES", FailureLocalFirewall},
			{60, "ETIMEDOUT", FailureTimeout},
		},
		lost:    []syscall.Errno{54, 53, 32}, // ECONNRESET, ECONNABORTED, EPIPE
		stalled: []syscall.Errno{60},         // ETIMEDOUT
	},
}

// errnos is the table of the platform the agent runs on; on a platform
// without one, every dial error is dial_error.
var errnos = errnoTables[runtime.GOOS]

// dialFailure returns the failure class of err's errno, or "".
func (p platformErrnos) dialFailure(err error) string {
	for _, e := range p.dial {
		if errors.Is(err, e.errno) {
			return e.failure
		}
	}
	return ""
}

// isLost reports whether err carries an errno of a lost connection.
func (p platformErrnos) isLost(err error) bool {
	return isAny(err, p.lost)
}

// isStalled reports whether err carries an errno of a connection the
// kernel gave up on.
func (p platformErrnos) isStalled(err error) bool {
	return isAny(err, p.stalled)
}

func isAny(err error, list []syscall.Errno) bool {
	for _, e := range list {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
