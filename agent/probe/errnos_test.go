package probe

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/verdict"
)

// The current platform's errnos for the failures the other tests use.
var (
	eRefused         = errnoFor(FailureConnectionRefused)
	eReset           = errnoFor(FailureConnectionReset)
	eHostUnreachable = errnoFor(FailureHostUnreachable)
	eNetUnreachable  = errnoFor(FailureNetworkUnreachable)
	eTimedOut        = errnoFor(FailureTimeout)
	// eUnmapped is in no platform's table.
	eUnmapped = syscall.Errno(99999)
)

func errnoFor(failure string) syscall.Errno {
	for _, e := range errnos.dial {
		if e.failure == failure {
			return e.errno
		}
	}
	return eUnmapped
}

// platformCase is one event on one platform, the errno its kernel reports
// and where it ends.
type platformCase struct {
	errno syscall.Errno
	event string
	want  string // the failure class; "" for dial_error
}

// platformCases are written from each platform's headers and documents,
// apart from the tables in errnos.go, and checked against them one by one.
var platformCases = map[string][]platformCase{
	"linux": {
		{111, "RST to the SYN", FailureConnectionRefused},
		{104, "RST during the handshake", FailureConnectionReset},
		{113, "ICMP host unreachable", FailureHostUnreachable},
		{101, "ICMP network unreachable, or no route", FailureNetworkUnreachable},
		{13, "ICMPv6 administratively prohibited, reject-route", FailureAdminProhibited},
		{1, "a local netfilter rule", FailureLocalFirewall},
		{110, "SYNs unanswered until the kernel gives up", FailureTimeout},
		{112, "EHOSTDOWN", ""},
		{99, "EADDRNOTAVAIL", ""},
	},
	"windows": {
		{10061, "WSAECONNREFUSED: RST to the SYN", FailureConnectionRefused},
		{1225, "ERROR_CONNECTION_REFUSED from an overlapped ConnectEx", FailureConnectionRefused},
		{10054, "WSAECONNRESET", FailureConnectionReset},
		{10065, "WSAEHOSTUNREACH: ICMP host unreachable or administratively prohibited", FailureHostUnreachable},
		{1232, "ERROR_HOST_UNREACHABLE", FailureHostUnreachable},
		{10051, "WSAENETUNREACH", FailureNetworkUnreachable},
		{1231, "ERROR_NETWORK_UNREACHABLE", FailureNetworkUnreachable},
		{10013, "WSAEACCES: Windows Firewall blocks the connection", FailureLocalFirewall},
		{10060, "WSAETIMEDOUT: SYNs unanswered", FailureTimeout},
		{121, "ERROR_SEM_TIMEOUT", FailureTimeout},
		{10050, "WSAENETDOWN", ""},
		{10049, "WSAEADDRNOTAVAIL", ""},
		{10064, "WSAEHOSTDOWN", ""},
		{111, "Linux's ECONNREFUSED number, which Winsock does not use", ""},
	},
	"darwin": {
		{61, "ECONNREFUSED", FailureConnectionRefused},
		{54, "ECONNRESET", FailureConnectionReset},
		{65, "EHOSTUNREACH: ICMP host unreachable or administratively prohibited", FailureHostUnreachable},
		{51, "ENETUNREACH", FailureNetworkUnreachable},
		{60, "ETIMEDOUT", FailureTimeout},
		{13, "EACCES: not known to mean one thing", ""},
		{1, "EPERM: not known to mean one thing", ""},
		{64, "EHOSTDOWN", ""},
		{111, "Linux's ECONNREFUSED number, which macOS does not use for it", ""},
	},
	"freebsd": {
		{61, "ECONNREFUSED", FailureConnectionRefused},
		{54, "ECONNRESET", FailureConnectionReset},
		{65, "EHOSTUNREACH: ICMP host unreachable or administratively prohibited", FailureHostUnreachable},
		{51, "ENETUNREACH", FailureNetworkUnreachable},
		{13, "EACCES: a local ipfw or pf rule refuses the SYN on output", FailureLocalFirewall},
		{60, "ETIMEDOUT", FailureTimeout},
		{1, "EPERM", ""},
		{64, "EHOSTDOWN", ""},
	},
}

// TestEveryPlatformsDialErrors checks each platform's table case by case,
// whatever platform the test runs on: the failure class of a dial error
// wrapped as Go's net package wraps it, and the verdict. An errno outside
// the table is dial_error and INCONCLUSIVE even when the control port
// answered.
func TestEveryPlatformsDialErrors(t *testing.T) {
	for _, goos := range []string{"linux", "windows", "darwin", "freebsd"} {
		table, ok := errnoTables[goos]
		if !ok {
			t.Errorf("%s: no errno table", goos)
			continue
		}
		if len(platformCases[goos]) < len(table.dial) {
			t.Errorf("%s: %d cases for %d table entries; want one at least for each", goos, len(platformCases[goos]), len(table.dial))
		}
		for _, c := range platformCases[goos] {
			err := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25},
				Err: os.NewSyscallError("connect", c.errno)}
			want := c.want
			if want == "" {
				want = FailureDialError
			}
			if got := table.classifyDial(err); got != want {
				t.Errorf("%s, %s (errno %d): %q; want %q", goos, c.event, c.errno, got, want)
			}
			if want == FailureDialError {
				ctl := Control{Reached: true, ServedPorts: []uint16{25}}
				if o := decideDialWith(table, err, 25, ctl); o.verdict != verdict.Inconclusive {
					t.Errorf("%s, %s: verdict %v; an unmapped error must be INCONCLUSIVE", goos, c.event, o.verdict)
				}
			}
		}
		for _, e := range table.dial {
			found := false
			for _, c := range platformCases[goos] {
				found = found || (c.errno == e.errno && c.want == e.failure)
			}
			if !found {
				t.Errorf("%s: table entry %s (%d) → %s has no case", goos, e.name, e.errno, e.failure)
			}
		}
	}
	if _, ok := errnoTables[runtime.GOOS]; !ok {
		t.Logf("%s has no errno table: every dial error is dial_error here", runtime.GOOS)
	}
}

// TestEveryPlatformsLostConnections: after the handshake, each platform's
// reset and broken-pipe errnos are a lost connection and its kernel's
// timeout a stall, both INCONCLUSIVE path noise; never a protocol error,
// which would count as a third party's.
func TestEveryPlatformsLostConnections(t *testing.T) {
	cases := map[string][]platformCase{
		"linux":   {{104, "ECONNRESET", FailureConnectionLost}, {32, "EPIPE", FailureConnectionLost}, {103, "ECONNABORTED", FailureConnectionLost}, {110, "ETIMEDOUT", FailureDeadline}},
		"windows": {{10054, "WSAECONNRESET", FailureConnectionLost}, {10053, "WSAECONNABORTED", FailureConnectionLost}, {64, "ERROR_NETNAME_DELETED", FailureConnectionLost}, {1236, "ERROR_CONNECTION_ABORTED", FailureConnectionLost}, {10060, "WSAETIMEDOUT", FailureDeadline}},
		"darwin":  {{54, "ECONNRESET", FailureConnectionLost}, {32, "EPIPE", FailureConnectionLost}, {41, "EPROTOTYPE", FailureConnectionLost}, {60, "ETIMEDOUT", FailureDeadline}},
		"freebsd": {{54, "ECONNRESET", FailureConnectionLost}, {32, "EPIPE", FailureConnectionLost}, {53, "ECONNABORTED", FailureConnectionLost}, {60, "ETIMEDOUT", FailureDeadline}},
	}
	for goos, list := range cases {
		for _, c := range list {
			err := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("wsarecv", c.errno)}
			if got := errnoTables[goos].classifyDialog(err); got != c.want {
				t.Errorf("%s, %s during a dialog: %q; want %q", goos, c.event, got, c.want)
			}
		}
	}
}

// decideDialWith is decideDial with another platform's table.
func decideDialWith(p platformErrnos, err error, port uint16, ctl Control) outcome {
	saved := errnos
	errnos = p
	defer func() { errnos = saved }()
	return decideDial(err, port, ctl, 10*time.Second, 1)
}
