package probe

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
	return &observation{bannerCode: 220, ours: true, phase: PhaseDone, deadline: 10 * time.Second,
		first: validHello("8BITMIME", "STARTTLS"), tls: &TLS{PinValid: true}, second: validHello("8BITMIME")}
}

// implicitOpened is a dialog on an implicit-TLS port that went well.
func implicitOpened() *observation {
	return &observation{implicit: true, bannerCode: 220, ours: true, phase: PhaseDone, deadline: 10 * time.Second,
		first: validHello("AUTH"), tls: &TLS{PinValid: true}}
}

var (
	errStall = fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
	errReset = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", eReset)}
)

func refusedHello() *hello {
	h := validHello()
	h.code, h.st.Refused = 421, proof.RefusedRate
	return h
}

func TestDecide(t *testing.T) {
	reached := Control{Reached: true, ObservedSource: agentAddr, ServedPorts: []uint16{25, 587, 465}}
	down := Control{Failure: FailureTimeout}
	edit := func(f func(*observation)) *observation {
		o := opened()
		f(o)
		return o
	}
	implicit := func(f func(*observation)) *observation {
		o := implicitOpened()
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
		{"open over implicit TLS", implicitOpened(), reached, verdict.Open, ""},
		{"open behind a NAT", opened(), Control{Reached: true, ObservedSource: netip.MustParseAddr("::ffff:198.51.100.7"), ServedPorts: []uint16{25}}, verdict.Open, ""},

		// Dial failures.
		{"refused", &observation{dialErr: dialErr(eRefused)}, reached, verdict.BlockedReset, FailureConnectionRefused},
		{"reset", &observation{dialErr: dialErr(eReset)}, reached, verdict.BlockedReset, FailureConnectionReset},
		{"host unreachable", &observation{dialErr: dialErr(eHostUnreachable)}, reached, verdict.BlockedUnreachable, FailureHostUnreachable},
		{"network unreachable", &observation{dialErr: dialErr(eNetUnreachable)}, reached, verdict.BlockedUnreachable, FailureNetworkUnreachable},
		{"timeout", &observation{dialErr: timeout}, reached, verdict.BlockedTimeout, FailureTimeout},
		{"refused, control down", &observation{dialErr: dialErr(eRefused)}, down, verdict.Inconclusive, FailureConnectionRefused},
		{"timeout, control down", &observation{dialErr: timeout}, down, verdict.Inconclusive, FailureTimeout},
		{"refused, port not served", &observation{dialErr: dialErr(eRefused)},
			Control{Reached: true, ObservedSource: agentAddr, ServedPorts: []uint16{587}}, verdict.Inconclusive, FailurePortNotServed},
		{"other dial error", &observation{dialErr: dialErr(eUnmapped)}, reached, verdict.Inconclusive, FailureDialError},

		// Our own refusal, signed: never a third party's.
		{"refused by the reference MTA", edit(func(o *observation) { o.first, o.tls, o.second = refusedHello(), nil, nil }), reached, verdict.Inconclusive, FailureRefMTABusy},
		{"refused by the reference MTA over implicit TLS", implicit(func(o *observation) { o.first = refusedHello() }), reached, verdict.Inconclusive, FailureRefMTABusy},
		{"421 greeting behind the pinned certificate", implicit(func(o *observation) { o.bannerCode, o.first = 421, nil }), reached, verdict.Inconclusive, FailureRefMTABusy},
		{"refusal for another nonce", edit(func(o *observation) {
			o.first, o.tls, o.second = refusedHello(), nil, nil
			o.first.proofErr = errOtherNonce
		}), reached, verdict.Intercepted, FailureProofInvalid},
		{"unsigned 421 greeting", &observation{bannerCode: 421}, reached, verdict.Intercepted, FailureProofMissing},
		{"421 greeting behind a foreign certificate", implicit(func(o *observation) { o.bannerCode, o.first, o.tls.PinValid = 421, nil, false }), reached, verdict.Intercepted, FailureCertificateMismatch},

		// No valid statement, with positive evidence of a third party.
		{"foreign banner code", &observation{bannerCode: 554}, reached, verdict.Intercepted, FailureProofMissing},
		{"no proof", edit(func(o *observation) { o.first.token, o.first.proofErr = "", errNoProof }), reached, verdict.Intercepted, FailureProofMissing},
		{"bad signature", edit(func(o *observation) { o.first.signed, o.first.proofErr = false, proof.ErrBadSignature }), reached, verdict.Intercepted, FailureProofInvalid},
		{"other nonce", edit(func(o *observation) { o.first.proofErr = errOtherNonce }), reached, verdict.Intercepted, FailureProofInvalid},
		{"other port", edit(func(o *observation) { o.first.proofErr = errOtherPort }), reached, verdict.Intercepted, FailureProofInvalid},
		{"no proof, control down", edit(func(o *observation) { o.first.token, o.first.proofErr = "", errNoProof }), down, verdict.Intercepted, FailureProofMissing},
		{"banner too long", &observation{phase: PhaseGreeting, err: fmt.Errorf("banner: %w", smtpwire.ErrLineTooLong)}, reached, verdict.Intercepted, FailureProtocolError},
		{"EHLO reply malformed", edit(func(o *observation) { o.first = &hello{err: smtpwire.ErrMalformed} }), reached, verdict.Intercepted, FailureProtocolError},
		{"plaintext answer on an implicit-TLS port", &observation{implicit: true, phase: PhaseTLSHandshake,
			err: errors.New("TLS handshake: tls: first record does not look like a TLS handshake")}, reached, verdict.Intercepted, FailureProtocolError},
		{"foreign greeting, then the EHLO reply stalls", edit(func(o *observation) { o.ours, o.first = false, &hello{err: errStall} }), reached, verdict.Intercepted, FailureDeadline},
		{"foreign certificate on an implicit-TLS port, then a stall", implicit(func(o *observation) { o.tls.PinValid, o.first = false, &hello{err: errStall} }), reached, verdict.Intercepted, FailureCertificateMismatch},
		{"foreign certificate on an implicit-TLS port, no proof", implicit(func(o *observation) { o.tls.PinValid, o.first.proofErr = false, errNoProof }), reached, verdict.Intercepted, FailureProofMissing},

		// Behind the certificate pinned to our key only our MTA writes.
		{"no proof inside the pinned implicit TLS", implicit(func(o *observation) { o.first.token, o.first.proofErr = "", errNoProof }), reached, verdict.Inconclusive, FailureProofMissing},
		{"garbage inside the pinned implicit TLS", implicit(func(o *observation) { o.first = &hello{err: smtpwire.ErrMalformed} }), reached, verdict.Inconclusive, FailureProtocolError},
		{"bad statement inside pinned STARTTLS", edit(func(o *observation) { o.second.token, o.second.proofErr = "", errNoProof }), reached, verdict.Inconclusive, FailureProofMissing},

		// Our statement, then a third party's mark.
		{"foreign certificate", edit(func(o *observation) { o.tls.PinValid = false }), reached, verdict.Tampered, FailureCertificateMismatch},
		{"foreign certificate, no proof inside", edit(func(o *observation) {
			o.tls.PinValid = false
			o.second.token, o.second.proofErr = "", errNoProof
		}), reached, verdict.Tampered, FailureCertificateMismatch},
		{"foreign certificate wins over capabilities", edit(func(o *observation) {
			o.tls.PinValid = false
			o.first.caps = []string{"8BITMIME", "STARTTLS", "X-PROXY"}
		}), reached, verdict.Tampered, FailureCertificateMismatch},
		{"foreign certificate over implicit TLS", implicit(func(o *observation) { o.tls.PinValid = false }), reached, verdict.Tampered, FailureCertificateMismatch},
		{"STARTTLS stripped", edit(func(o *observation) {
			o.first.caps = []string{"8BITMIME"}
			o.tls, o.second = nil, nil
		}), reached, verdict.Tampered, FailureSTARTTLSStripped},
		{"capability added", edit(func(o *observation) { o.first.caps = []string{"8BITMIME", "STARTTLS", "CHUNKING"} }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"capabilities reordered", edit(func(o *observation) { o.first.caps = []string{"STARTTLS", "8BITMIME"} }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"capabilities modified inside TLS", edit(func(o *observation) { o.second.caps = nil }), reached, verdict.Tampered, FailureCapabilitiesModified},
		{"STARTTLS refused", edit(func(o *observation) {
			o.tls, o.second, o.phase = nil, nil, PhaseSTARTTLS
			o.tlsErr = fmt.Errorf("%w: 454 reply", errSTARTTLSRefused)
		}), reached, verdict.Tampered, FailureTLSFailed},
		{"TLS alert", edit(func(o *observation) {
			o.tls, o.second, o.phase = nil, nil, PhaseSTARTTLSHandshake
			o.tlsErr = fmt.Errorf("TLS handshake: %w", tls.AlertError(40))
		}), reached, verdict.Tampered, FailureTLSFailed},
		{"data injected before the handshake, control down", edit(func(o *observation) {
			o.tls, o.second = nil, nil
			o.tlsErr = errInjected
		}), down, verdict.Tampered, FailureTLSFailed},
		{"reoriginated", edit(func(o *observation) { o.first.st.Source, o.second.st.Source = proxyAddr, proxyAddr }), reached, verdict.Intercepted, FailureReoriginated},
		{"reoriginated inside TLS", edit(func(o *observation) { o.second.st.Source = proxyAddr }), reached, verdict.Intercepted, FailureReoriginated},
		{"reoriginated, then STARTTLS stalls", edit(func(o *observation) {
			o.first.st.Source, o.tls, o.second, o.tlsErr = proxyAddr, nil, nil, errStall
		}), reached, verdict.Intercepted, FailureReoriginated},
		{"other source, control down", edit(func(o *observation) { o.first.st.Source = proxyAddr }), down, verdict.Open, ""},
	} {
		got := decide(tc.o, 25, tc.ctl)
		if got.verdict != tc.verdict || got.failure != tc.failure {
			t.Errorf("decide(%q) = %v (%q): %s; want %v (%q)", tc.name, got.verdict, got.failure, got.detail, tc.verdict, tc.failure)
		}
		if got.detail == "" || strings.Contains(got.detail, "192.0.2.25") || strings.Contains(got.detail, agentAddr.String()) {
			t.Errorf("decide(%q) detail = %q; want a sentence without addresses", tc.name, got.detail)
		}
	}
}

// TestTimeoutInEachPhase is the table of docs/methodology.md, "A timeout
// in each phase": what a stall or a lost connection means depends on what
// the attempt had seen by then, and never alone makes a third party.
func TestTimeoutInEachPhase(t *testing.T) {
	reached := Control{Reached: true, ObservedSource: agentAddr, ServedPorts: []uint16{25, 587, 465}}
	starttls := func(phase string, f func(*observation)) *observation {
		o := opened()
		o.phase = phase
		f(o)
		return o
	}
	implicit := func(phase string, f func(*observation)) *observation {
		o := implicitOpened()
		o.phase = phase
		f(o)
		return o
	}
	type row struct {
		phase   string
		o       func(err error) *observation
		verdict verdict.Verdict
	}
	rows := []row{
		{"STARTTLS port, before any byte", func(err error) *observation {
			return &observation{phase: PhaseGreeting, err: fmt.Errorf("banner: %w", err)}
		}, verdict.Inconclusive},
		{"STARTTLS port, inside a partial greeting", func(err error) *observation {
			return &observation{phase: PhaseGreeting, banner: "220 mx", err: fmt.Errorf("banner: %w", err)}
		}, verdict.Inconclusive},
		{"STARTTLS port, after our banner", func(err error) *observation {
			return starttls(PhaseEHLO, func(o *observation) { o.first, o.tls, o.second = &hello{err: err}, nil, nil })
		}, verdict.Inconclusive},
		{"STARTTLS port, after a foreign banner", func(err error) *observation {
			return starttls(PhaseEHLO, func(o *observation) { o.ours, o.first, o.tls, o.second = false, &hello{err: err}, nil, nil })
		}, verdict.Intercepted},
		{"STARTTLS port, after a verified statement (STARTTLS reply)", func(err error) *observation {
			return starttls(PhaseSTARTTLS, func(o *observation) { o.tls, o.second, o.tlsErr = nil, nil, fmt.Errorf("STARTTLS reply: %w", err) })
		}, verdict.Inconclusive},
		{"STARTTLS port, during the TLS handshake", func(err error) *observation {
			return starttls(PhaseSTARTTLSHandshake, func(o *observation) { o.tls, o.second, o.tlsErr = nil, nil, fmt.Errorf("TLS handshake: %w", err) })
		}, verdict.Inconclusive},
		{"STARTTLS port, after the pinned handshake", func(err error) *observation {
			return starttls(PhaseEHLOTLS, func(o *observation) { o.second = &hello{err: err} })
		}, verdict.Open},
		{"STARTTLS port, after a foreign certificate", func(err error) *observation {
			return starttls(PhaseEHLOTLS, func(o *observation) { o.tls.PinValid, o.second = false, &hello{err: err} })
		}, verdict.Tampered},
		{"implicit TLS, during the handshake", func(err error) *observation {
			return &observation{implicit: true, phase: PhaseTLSHandshake, err: fmt.Errorf("TLS handshake: %w", err)}
		}, verdict.Inconclusive},
		{"implicit TLS, greeting after the pinned handshake", func(err error) *observation {
			return implicit(PhaseGreeting, func(o *observation) {
				o.bannerCode, o.ours, o.first, o.err = 0, false, nil, fmt.Errorf("banner: %w", err)
			})
		}, verdict.Inconclusive},
		{"implicit TLS, EHLO after the pinned handshake", func(err error) *observation {
			return implicit(PhaseEHLO, func(o *observation) { o.first = &hello{err: err} })
		}, verdict.Inconclusive},
		{"implicit TLS, after a foreign certificate", func(err error) *observation {
			return implicit(PhaseEHLO, func(o *observation) { o.tls.PinValid, o.first = false, &hello{err: err} })
		}, verdict.Intercepted},
	}
	for _, r := range rows {
		for _, e := range []struct {
			name    string
			err     error
			failure string
		}{{"stall", errStall, FailureDeadline}, {"reset", errReset, FailureConnectionLost}, {"close", io.EOF, FailureConnectionLost}} {
			got := decide(r.o(e.err), 25, reached)
			want := e.failure
			switch r.verdict {
			case verdict.Open:
				want = ""
			case verdict.Tampered:
				want = FailureCertificateMismatch
			case verdict.Intercepted:
				if strings.Contains(r.phase, "foreign certificate") {
					want = FailureCertificateMismatch
				}
			}
			if got.verdict != r.verdict || got.failure != want {
				t.Errorf("%s, %s: decide = %v (%q): %s; want %v (%q)", r.phase, e.name, got.verdict, got.failure, got.detail, r.verdict, want)
			}
		}
	}
}

func TestControlFailure(t *testing.T) {
	ok := func() *observation {
		return &observation{tls: &TLS{PinValid: true}, bannerCode: 220, first: validHello("8BITMIME")}
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
		{"refused", &observation{dialErr: dialErr(eRefused)}, FailureConnectionRefused},
		{"TLS failed", &observation{err: errors.New("TLS handshake: tls: first record does not look like a TLS handshake")}, FailureProtocolError},
		{"stalled", &observation{err: os.ErrDeadlineExceeded}, FailureDeadline},
		{"lost", &observation{err: io.EOF}, FailureConnectionLost},
		{"busy", edit(func(o *observation) { o.first = refusedHello() }), FailureRefMTABusy},
		{"busy at the greeting", edit(func(o *observation) { o.implicit, o.bannerCode, o.first = true, 421, nil }), FailureRefMTABusy},
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
