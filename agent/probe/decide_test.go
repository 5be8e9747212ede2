package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/internal/verdict"
)

// Fabricated observations for the verdict rules of docs/methodology.md.

var (
	agentAddr = netip.MustParseAddr("198.51.100.7")
	proxyAddr = netip.MustParseAddr("203.0.113.9")
)

func dialErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25},
		Err: os.NewSyscallError("connect", errno)}
}

func validHello(caps ...string) *hello {
	return &hello{code: 250, caps: caps, token: "tok", signed: true,
		st: proof.Statement{Source: agentAddr, Port: 25, Capabilities: caps}}
}

// opened is a dialog on a STARTTLS port that went as the methodology
// says, TLS behind the pinned certificate included.
func opened() *observation {
	return &observation{received: true, bannerCode: 220,
		first: validHello("8BITMIME", "STARTTLS"), tls: &TLS{PinValid: true}, second: validHello("8BITMIME")}
}

func TestDecide(t *testing.T) {
	reached := Control{Reached: true, ObservedSource: agentAddr, ServedPorts: []uint16{25, 587, 465}}
	down := Control{Failure: FailureTimeout}
	edit := func(f func(*observation)) *observation {
		o := opened()
		f(o)
		return o
	}
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name    string
		o       *observation
		ctl     Control
		verdict verdict.Verdict
		failure string
	}{
		{"open", opened(), reached, verdict.Open, ""},
		{"open, control down", opened(), down, verdict.Open, ""},
		{"open over implicit TLS", &observation{received: true, bannerCode: 220, first: validHello("AUTH"), tls: &TLS{PinValid: true}}, reached, verdict.Open, ""},
		{"open behind a NAT", opened(), Control{Reached: true, ObservedSource: netip.MustParseAddr("::ffff:198.51.100.7"), ServedPorts: []uint16{25}}, verdict.Open, ""},

		// Dial failures.
		{"refused", &observation{dialErr: dialErr(syscall.ECONNREFUSED)}, reached, verdict.BlockedReset, FailureConnectionRefused},
		{"reset", &observation{dialErr: dialErr(syscall.ECONNRESET)}, reached, verdict.BlockedReset, FailureConnectionReset},
		{"host unreachable", &observation{dialErr: dialErr(syscall.EHOSTUNREACH)}, reached, verdict.BlockedUnreachable, FailureHostUnreachable},
		{"network unreachable", &observation{dialErr: dialErr(syscall.ENETUNREACH)}, reached, verdict.BlockedUnreachable, FailureNetworkUnreachable},
		{"timeout", &observation{dialErr: timeout}, reached, verdict.BlockedTimeout, FailureTimeout},
		{"refused, control down", &observation{dialErr: dialErr(syscall.ECONNREFUSED)}, down, verdict.Inconclusive, FailureConnectionRefused},
		{"timeout, control down", &observation{dialErr: timeout}, down, verdict.Inconclusive, FailureTimeout},
		{"refused, port not served", &observation{dialErr: dialErr(syscall.ECONNREFUSED)},
			Control{Reached: true, ObservedSource: agentAddr, ServedPorts: []uint16{587}}, verdict.Inconclusive, FailurePortNotServed},
		{"other dial error", &observation{dialErr: dialErr(syscall.EADDRNOTAVAIL)}, reached, verdict.Inconclusive, FailureDialError},

		// Rule 1.
		{"foreign banner code", &observation{received: true, bannerCode: 554}, reached, verdict.Intercepted, FailureProofMissing},
		{"no proof", edit(func(o *observation) { o.first.token, o.first.proofErr = "", errNoProof }), reached, verdict.Intercepted, FailureProofMissing},
		{"bad signature", edit(func(o *observation) { o.first.signed, o.first.proofErr = false, proof.ErrBadSignature }), reached, verdict.Intercepted, FailureProofInvalid},
		{"other nonce", edit(func(o *observation) { o.first.proofErr = errOtherNonce }), reached, verdict.Intercepted, FailureProofInvalid},
		{"other port", edit(func(o *observation) { o.first.proofErr = errOtherPort }), reached, verdict.Intercepted, FailureProofInvalid},
		{"no proof, control down", edit(func(o *observation) { o.first.token, o.first.proofErr = "", errNoProof }), down, verdict.Intercepted, FailureProofMissing},
		{"banner too long", &observation{received: true, err: fmt.Errorf("banner: %w", smtpwire.ErrLineTooLong)}, reached, verdict.Intercepted, FailureProtocolError},
		{"tarpit", &observation{received: true, err: fmt.Errorf("banner: %w", os.ErrDeadlineExceeded)}, reached, verdict.Intercepted, FailureDeadline},
		{"EHLO reply stalls", edit(func(o *observation) { o.first = &hello{err: os.ErrDeadlineExceeded} }), reached, verdict.Intercepted, FailureDeadline},
		{"silent, control down", &observation{err: os.ErrDeadlineExceeded}, down, verdict.Inconclusive, FailureDeadline},
		{"closed at once, control down", &observation{err: errors.New("EOF")}, down, verdict.Inconclusive, FailureProtocolError},
		{"closed at once", &observation{err: errors.New("EOF")}, reached, verdict.Intercepted, FailureProtocolError},
		{"no proof inside pinned TLS", edit(func(o *observation) { o.second.token, o.second.proofErr = "", errNoProof }), reached, verdict.Intercepted, FailureProofMissing},
		{"EHLO inside pinned TLS stalls", edit(func(o *observation) { o.second = &hello{err: os.ErrDeadlineExceeded} }), reached, verdict.Intercepted, FailureDeadline},

		// Rule 2.
		{"foreign certificate", edit(func(o *observation) { o.tls.PinValid = false }), reached, verdict.Tampered, FailureCertificateMismatch},
		{"foreign certificate, no proof inside", edit(func(o *observation) {
			o.tls.PinValid = false
			o.second.token, o.second.proofErr = "", errNoProof
		}), reached, verdict.Tampered, FailureCertificateMismatch},
		{"foreign certificate wins over capabilities", edit(func(o *observation) {
			o.tls.PinValid = false
			o.first.caps = []string{"8BITMIME", "STARTTLS", "X-PROXY"}
		}), reached, verdict.Tampered, FailureCertificateMismatch},

		// Rule 3.
		{"STARTTLS stripped", edit(func(o *observation) {
			o.first.caps = []string{"8BITMIME"}
			o.tls, o.second = nil, nil
		}), reached, verdict.Tampered, FailureSTARTTLSStripped},
		{"capability added", edit(func(o *observation) { o.first.caps = []string{"8BITMIME", "STARTTLS", "CHUNKING"} }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"capabilities reordered", edit(func(o *observation) { o.first.caps = []string{"STARTTLS", "8BITMIME"} }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"capabilities modified inside TLS", edit(func(o *observation) { o.second.caps = nil }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"TLS handshake failed", edit(func(o *observation) {
			o.tls, o.second = nil, nil
			o.tlsErr = errors.New("TLS handshake: remote error")
		}), reached, verdict.Tampered, FailureTLSFailed},
		{"TLS failed, control down", edit(func(o *observation) {
			o.tls, o.second = nil, nil
			o.tlsErr = errInjected
		}), down, verdict.Tampered, FailureTLSFailed},

		// Rule 4.
		{"reoriginated", edit(func(o *observation) { o.first.st.Source, o.second.st.Source = proxyAddr, proxyAddr }), reached, verdict.Intercepted, FailureReoriginated},
		{"reoriginated inside TLS", edit(func(o *observation) { o.second.st.Source = proxyAddr }), reached, verdict.Intercepted, FailureReoriginated},
		{"other source, control down", edit(func(o *observation) { o.first.st.Source = proxyAddr }), down, verdict.Open, ""},
	} {
		got := decide(tc.o, 25, tc.ctl, 10*time.Second)
		if got.verdict != tc.verdict || got.failure != tc.failure {
			t.Errorf("decide(%q) = %v (%q); want %v (%q)", tc.name, got.verdict, got.failure, tc.verdict, tc.failure)
		}
		if got.detail == "" || strings.Contains(got.detail, "192.0.2.25") || strings.Contains(got.detail, agentAddr.String()) {
			t.Errorf("decide(%q) detail = %q; want a sentence without addresses", tc.name, got.detail)
		}
	}
}

func TestControlFailure(t *testing.T) {
	ok := func() *observation {
		return &observation{received: true, tls: &TLS{PinValid: true}, bannerCode: 220, first: validHello("8BITMIME")}
	}
	edit := func(f func(*observation)) *observation {
		o := ok()
		f(o)
		return o
	}
	for _, tc := range []struct {
		name string
		o    *observation
		want string
	}{
		{"reached", ok(), ""},
		{"refused", &observation{dialErr: dialErr(syscall.ECONNREFUSED)}, FailureConnectionRefused},
		{"TLS failed", &observation{err: errors.New("TLS handshake: tls: first record does not look like a TLS handshake")}, FailureProtocolError},
		{"stalled", &observation{err: os.ErrDeadlineExceeded}, FailureDeadline},
		{"foreign certificate", edit(func(o *observation) { o.tls.PinValid = false }), FailureCertificateMismatch},
		{"foreign banner", edit(func(o *observation) { o.bannerCode, o.first = 554, nil }), FailureProofMissing},
		{"no proof", edit(func(o *observation) { o.first.proofErr = errNoProof }), FailureProofMissing},
		{"bad proof", edit(func(o *observation) { o.first.proofErr = proof.ErrBadSignature }), FailureProofInvalid},
		{"EHLO stalled", edit(func(o *observation) { o.first.err = os.ErrDeadlineExceeded }), FailureDeadline},
	} {
		if got := controlFailure(tc.o); got != tc.want {
			t.Errorf("controlFailure(%q) = %q; want %q", tc.name, got, tc.want)
		}
	}
}
