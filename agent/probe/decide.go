package probe

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/op25b/observatory/internal/verdict"
)

// outcome is a verdict with its failure class and its explanation.
type outcome struct {
	verdict verdict.Verdict
	failure string
	detail  string
}

// decide applies the verdict rules of docs/methodology.md, in their order,
// to what one port probe observed and to what the control probe of the
// same target and family said in the same round.
func decide(o *observation, port uint16, ctl Control, timeout time.Duration) outcome {
	if o.dialErr != nil {
		return decideDial(o.dialErr, port, ctl, timeout)
	}
	// Rule 1: no valid statement for our nonce and port.
	if failure, detail := noStatement(o, timeout); failure != "" {
		if !o.received && !ctl.Reached {
			return outcome{verdict.Inconclusive, failure, detail +
				"; the control port did not answer either, so this cannot be told from lost connectivity"}
		}
		return outcome{verdict.Intercepted, failure, detail}
	}
	// Rule 2: our statement, a foreign certificate.
	if o.tls != nil && !o.tls.PinValid {
		return outcome{verdict.Tampered, FailureCertificateMismatch, fmt.Sprintf(
			"the reference MTA's statement verifies, but the TLS certificate presented (subject %q) does not carry its key", o.tls.Subject)}
	}
	// Rule 3: our statement, other capabilities, or a TLS upgrade that
	// failed after it.
	for _, h := range []*hello{o.first, o.second} {
		if h == nil || slices.Equal(h.caps, h.st.Capabilities) {
			continue
		}
		if slices.Contains(h.st.Capabilities, "STARTTLS") && !slices.Contains(h.caps, "STARTTLS") {
			return outcome{verdict.Tampered, FailureSTARTTLSStripped,
				"the reference MTA offered STARTTLS, but the EHLO reply arrived without it: stripped on the path"}
		}
		return outcome{verdict.Tampered, FailureCapabilitiesModified, fmt.Sprintf(
			"the EHLO capabilities received (%v) differ from those the reference MTA signed (%v)", h.caps, h.st.Capabilities)}
	}
	if o.tlsErr != nil {
		return outcome{verdict.Tampered, FailureTLSFailed, fmt.Sprintf(
			"the reference MTA's plaintext statement verifies, but STARTTLS failed: %s", describe(o.tlsErr))}
	}
	// Rule 4: our statement, but about a session from another address.
	if ctl.Reached {
		for _, h := range []*hello{o.first, o.second} {
			if h != nil && h.st.Source.Unmap() != ctl.ObservedSource.Unmap() {
				return outcome{verdict.Intercepted, FailureReoriginated,
					"the reference MTA saw this session come from another address than the control session: a proxy relayed it"}
			}
		}
	}
	return outcome{verdict.Open, "", "reached the reference MTA unmodified; its signed statement verifies"}
}

// decideDial decides a probe that got no TCP connection. Only the control
// port of the same host, answering in the same round and listing the port
// as served, turns a failure into BLOCKED.
func decideDial(err error, port uint16, ctl Control, timeout time.Duration) outcome {
	failure := classifyDial(err)
	what := dialPhrase(failure, err, timeout)
	switch {
	case failure == FailureDialError:
		return outcome{verdict.Inconclusive, failure, what}
	case !ctl.Reached:
		return outcome{verdict.Inconclusive, failure, what +
			", and the control port did not answer either, so blocking cannot be told from lost connectivity"}
	case !slices.Contains(ctl.ServedPorts, port):
		return outcome{verdict.Inconclusive, FailurePortNotServed, fmt.Sprintf(
			"%s, but the reference MTA does not list port %d among those it serves, so the refusal may be its own", what, port)}
	}
	v := verdict.BlockedUnreachable
	switch failure {
	case FailureConnectionRefused, FailureConnectionReset:
		v = verdict.BlockedReset
	case FailureTimeout:
		v = verdict.BlockedTimeout
	}
	return outcome{v, failure, what + " while the control port of the same host answered"}
}

func dialPhrase(failure string, err error, timeout time.Duration) string {
	switch failure {
	case FailureConnectionRefused:
		return "the connection was refused"
	case FailureConnectionReset:
		return "the connection was reset"
	case FailureHostUnreachable:
		return "the network reported the host unreachable"
	case FailureNetworkUnreachable:
		return "the network reported no route to the host's network"
	case FailureAdminProhibited:
		return "the network reported the connection administratively prohibited"
	case FailureLocalFirewall:
		return "a firewall on this machine refused the connection"
	case FailureTimeout:
		return fmt.Sprintf("the connection attempt got no answer within %s", timeout)
	}
	return "the connection failed: " + describe(err)
}

// noStatement returns the failure class and explanation of a dialog that
// did not yield a valid statement (rule 1), or "" when it did. Inside
// STARTTLS the statement counts only behind the pinned certificate: behind
// a foreign one, rule 2 applies whatever it says.
func noStatement(o *observation, timeout time.Duration) (failure, detail string) {
	switch {
	case o.err != nil:
		return dialogFailure(o.err, o.received, timeout)
	case o.bannerCode != 220:
		return FailureProofMissing, fmt.Sprintf("something answered with a %d greeting, not the reference MTA", o.bannerCode)
	case o.first.err != nil:
		return dialogFailure(o.first.err, o.received, timeout)
	case !o.first.valid():
		return proofFailure(o.first, "")
	case o.second != nil && o.tls.PinValid && o.second.err != nil:
		return dialogFailure(o.second.err, o.received, timeout)
	case o.second != nil && o.tls.PinValid && !o.second.valid():
		return proofFailure(o.second, " inside TLS")
	}
	return "", ""
}

func dialogFailure(err error, received bool, timeout time.Duration) (failure, detail string) {
	failure = classifyDialog(err)
	switch {
	case !received && failure == FailureDeadline:
		return failure, fmt.Sprintf("the connection was accepted, but nothing was received within %s", timeout)
	case !received:
		return failure, "the connection was accepted, then closed before anything was received: " + describe(err)
	case failure == FailureDeadline:
		return failure, fmt.Sprintf("something answered, but did not complete the dialog within %s: %s", timeout, describe(err))
	}
	return failure, "something answered, but broke the SMTP dialog: " + describe(err)
}

func proofFailure(h *hello, where string) (failure, detail string) {
	if errors.Is(h.proofErr, errNoProof) {
		return FailureProofMissing, "an SMTP server answered, but not the reference MTA: " + h.proofErr.Error() + where
	}
	return FailureProofInvalid, "an SMTP server answered with a statement that does not hold" + where + ": " + h.proofErr.Error()
}
