package probe

import "syscall"

// dialErrnos are the errnos of a failed connect(2) on Linux. Linux reports
// ICMPv6 "administratively prohibited" (and policy or reject-route
// failures) as EACCES, and a packet dropped by a local netfilter rule as
// EPERM.
var dialErrnos = []errnoFailure{
	{syscall.ECONNREFUSED, FailureConnectionRefused},
	{syscall.ECONNRESET, FailureConnectionReset},
	{syscall.EHOSTUNREACH, FailureHostUnreachable},
	{syscall.ENETUNREACH, FailureNetworkUnreachable},
	{syscall.EACCES, FailureAdminProhibited},
	{syscall.EPERM, FailureLocalFirewall},
	{syscall.ETIMEDOUT, FailureTimeout},
}
