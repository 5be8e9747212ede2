package probe

import (
	"context"
	"errors"
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
	FailureDeadline      = "deadline"
	FailureReoriginated  = "reoriginated"

	// Our MTA, modified on the path.
	FailureCertificateMismatch  = "certificate_mismatch"
	FailureSTARTTLSStripped     = "starttls_stripped"
	FailureCapabilitiesModified = "capabilities_modified"
	FailureTLSFailed            = "tls_failed"
)

// errnoFailure maps one errno to its failure class; the table is per
// platform (classify_linux.go, classify_other.go) because what an errno
// means after connect(2) is.
type errnoFailure struct {
	err     error
	failure string
}

// classifyDial returns the failure class of a dial error: errno first, as
// the most precise evidence, then timeouts. The class never carries an
// address.
func classifyDial(err error) string {
	for _, e := range dialErrnos {
		if errors.Is(err, e.err) {
			return e.failure
		}
	}
	if isTimeout(err) {
		return FailureTimeout
	}
	return FailureDialError
}

// classifyDialog returns the failure class of an error that ended a dialog
// after the connection was made.
func classifyDialog(err error) string {
	if isTimeout(err) {
		return FailureDeadline
	}
	return FailureProtocolError
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
