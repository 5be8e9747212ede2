package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
)

// Failure classes, as docs/methodology.md names them. They are stored and
// aggregated for years: never change one, only add.
const (
	// Dial failures: no TCP connection.
	FailureConnectionRefused  = "connection_refused"
	FailureConnectionReset    = "connection_reset"
	FailureHostUnreachable    = "host_unreachable"
	FailureNetworkUnreachable = "network_unreachable"
	FailureAdminProhibited    = "administratively_prohibited"
	FailureLocalFirewall      = "local_firewall"
	FailureTimeout            = "timeout"
	FailureDialError          = "dial_error"
	// FailurePortNotServed: the dial failed, but the reference MTA does
	// not list the port, so the refusal may be ours.
	FailurePortNotServed = "port_not_served"

	// Connected, but not to our MTA, or not by SMTP.
	FailureProofMissing  = "proof_missing"
	FailureProofInvalid  = "proof_invalid"
	FailureProtocolError = "protocol_error"
	FailureReoriginated  = "reoriginated"

	// Connected, then the dialog stalled past the deadline (FailureDeadline)
	// or the connection was closed or reset (FailureConnectionLost). Alone
	// they are path noise, INCONCLUSIVE; INTERCEPTED only beside positive
	// evidence of a third party (a greeting or certificate not ours).
	FailureDeadline       = "deadline"
	FailureConnectionLost = "connection_lost"

	// FailureRefMTABusy: the reference MTA refused the session in a
	// statement signed by its key (too busy, or our source over its rate).
	FailureRefMTABusy = "refmta_busy"
	// FailureUnconfirmed: the attempts of a probe did not confirm a
	// verdict other than OPEN.
	FailureUnconfirmed = "unconfirmed"
	// FailureInconsistent: one attempt reached our MTA unmodified, another
	// showed a third party.
	FailureInconsistent = "inconsistent"

	// Our MTA, modified on the path.
	FailureCertificateMismatch  = "certificate_mismatch"
	FailureSTARTTLSStripped     = "starttls_stripped"
	FailureCapabilitiesModified = "capabilities_modified"
	FailureTLSFailed            = "tls_failed"
)

// Phases of a dialog: where an attempt ended (docs/methodology.md, "A
// timeout in each phase"). Stored for years, like failure classes.
const (
	PhaseConnect           = "connect"            // no TCP connection
	PhaseTLSHandshake      = "tls_handshake"      // implicit TLS (465, control), before any SMTP
	PhaseGreeting          = "greeting"           // waiting for the 220 banner
	PhaseEHLO              = "ehlo"               // the first EHLO and its statement
	PhaseSTARTTLS          = "starttls"           // STARTTLS and its reply
	PhaseSTARTTLSHandshake = "starttls_handshake" // the TLS handshake after STARTTLS
	PhaseEHLOTLS           = "ehlo_tls"           // the EHLO inside STARTTLS
	PhaseDone              = "done"               // the dialog completed
)

// classifyDial returns the failure class of a dial error: errno first, as
// the most precise evidence, then timeouts. The class never carries an
// address.
func classifyDial(err error) string {
	return errnos.classifyDial(err)
}

func (p platformErrnos) classifyDial(err error) string {
	if f := p.dialFailure(err); f != "" {
		return f
	}
	if isTimeout(err) {
		return FailureTimeout
	}
	return FailureDialError
}

// classifyDialog returns the failure class of an error that ended a dialog
// after the connection was made: a stall, a lost connection, or anything
// else, which is the peer breaking the protocol (SMTP or TLS) in a way our
// reference MTA never does.
func classifyDialog(err error) string {
	return errnos.classifyDialog(err)
}

func (p platformErrnos) classifyDialog(err error) string {
	switch {
	case isTimeout(err) || p.isStalled(err):
		return FailureDeadline
	case p.lostConnection(err):
		return FailureConnectionLost
	}
	return FailureProtocolError
}

// lostConnection reports whether err is the connection closing or being
// reset under the dialog: a path may do that to any connection, so it is
// no evidence of who answered.
func (p platformErrnos) lostConnection(err error) bool {
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return p.isLost(err)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// describe returns err as text for a result's detail, with the addresses
// that net.OpError adds left out: details leave the volunteer's machine.
func describe(err error) string {
	msg := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		msg = strings.Replace(msg, op.Error(), op.Err.Error(), 1)
	}
	return evidenceText([]byte(msg), 200)
}

// controlFailure returns why a control probe did not answer as the
// reference MTA, or "" when it did: connected, behind the pinned
// certificate, with a statement valid for our nonce and the control port.
func controlFailure(o *observation) string {
	switch {
	case o.dialErr != nil:
		return classifyDial(o.dialErr)
	case o.refusal() != "":
		return FailureRefMTABusy
	case o.err != nil:
		return classifyDialog(o.err)
	case o.tls == nil || !o.tls.PinValid:
		return FailureCertificateMismatch
	case o.bannerCode != 220:
		return FailureProofMissing
	case o.first.err != nil:
		return classifyDialog(o.first.err)
	case errors.Is(o.first.proofErr, errNoProof):
		return FailureProofMissing
	case o.first.proofErr != nil:
		return FailureProofInvalid
	}
	return ""
}
