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
// to what one attempt of a port probe observed and to what the control
// probe of the same target and family said in the same round.
//
// The rules never call a third party without positive evidence of one: a
// greeting, reply, certificate or statement that is not ours, or an SMTP or
// TLS exchange that breaks the protocol. A stall or a lost connection after
// the TCP handshake is what a lossy or slow path does to anyone, so alone it
// is INCONCLUSIVE, whatever phase it ends.
func decide(o *observation, port uint16, ctl Control) outcome {
	if o.dialErr != nil {
		return decideDial(o.dialErr, port, ctl, o.deadline, o.dials)
	}
	if reason := o.refusal(); reason != "" {
		return outcome{verdict.Inconclusive, FailureRefMTABusy, fmt.Sprintf(
			"the reference MTA refused the session (%s) in a statement signed by its key: it was busy, and nothing on the path is to blame", reason)}
	}
	if !o.first.valid() {
		return noStatement(o)
	}
	// Our statement: the path reached our MTA. What did it change?
	if o.tls != nil && !o.tls.PinValid {
		return outcome{verdict.Tampered, FailureCertificateMismatch, fmt.Sprintf(
			"the reference MTA's statement verifies, but the TLS certificate presented (%s) does not carry its key", o.tls.describe())}
	}
	for _, h := range []*hello{o.first, o.second} {
		if !h.valid() || slices.Equal(h.caps, h.st.Capabilities) {
			continue
		}
		if slices.Contains(h.st.Capabilities, "STARTTLS") && !slices.Contains(h.caps, "STARTTLS") {
			return outcome{verdict.Tampered, FailureSTARTTLSStripped,
				"the reference MTA offered STARTTLS, but the EHLO reply arrived without it: stripped on the path"}
		}
		return outcome{verdict.Tampered, FailureCapabilitiesModified, fmt.Sprintf(
			"the EHLO capabilities received (%v) differ from those the reference MTA signed (%v)", h.caps, h.st.Capabilities)}
	}
	if o.tlsErr != nil && classifyDialog(o.tlsErr) == FailureProtocolError {
		return outcome{verdict.Tampered, FailureTLSFailed, fmt.Sprintf(
			"the reference MTA's plaintext statement verifies and it offered STARTTLS, but the upgrade failed in a way it never fails: %s", describe(o.tlsErr))}
	}
	if ctl.Reached {
		for _, h := range []*hello{o.first, o.second} {
			if h.valid() && h.st.Source.Unmap() != ctl.ObservedSource.Unmap() {
				return outcome{verdict.Intercepted, FailureReoriginated,
					"the reference MTA saw this session come from another address than the control session: a proxy relayed it"}
			}
		}
	}
	if o.tlsErr != nil {
		return outcome{verdict.Inconclusive, classifyDialog(o.tlsErr), fmt.Sprintf(
			"the reference MTA's plaintext statement verifies, but the STARTTLS upgrade %s (%s): the path lost or delayed it, and nothing shows that anyone but the reference MTA answered",
			stalledOrLost(o.tlsErr, o.deadline), describe(o.tlsErr))}
	}
	if h := o.second; h != nil && h.err == nil && !h.valid() {
		// Inside the TLS session pinned to the reference MTA's key only
		// the reference MTA writes: a bad statement there is its own fault.
		return outcome{verdict.Inconclusive, proofFailureClass(h), fmt.Sprintf(
			"the reference MTA's plaintext statement verifies, but its statement inside the pinned TLS session does not (%s): a fault of the reference MTA, not of the path", h.proofErr)}
	}
	if h := o.second; h != nil && h.err != nil {
		return outcome{verdict.Open, "", fmt.Sprintf(
			"reached the reference MTA unmodified: its signed statement verifies and the TLS certificate carries its key (the EHLO inside TLS then %s, which nothing on the path can alter)",
			stalledOrLost(h.err, o.deadline))}
	}
	return outcome{verdict.Open, "", "reached the reference MTA unmodified; its signed statement verifies"}
}

// noStatement decides an attempt that got no valid statement: INTERCEPTED
// when it saw positive evidence of a third party, else INCONCLUSIVE.
// Behind the certificate pinned to our key (465, control) only our MTA
// writes, so nothing there is a third party's.
func noStatement(o *observation) outcome {
	pinned := o.implicit && o.tls != nil && o.tls.PinValid
	third := func(failure, detail string) outcome {
		if pinned {
			return outcome{verdict.Inconclusive, failure, detail +
				"; but this came inside the TLS session pinned to the reference MTA's key, where only it writes: its own fault, not the path's"}
		}
		return outcome{verdict.Intercepted, failure, detail}
	}
	lost := func(err error, where string) outcome {
		return outcome{verdict.Inconclusive, classifyDialog(err), fmt.Sprintf(
			"the connection was made, but %s %s (%s): the path lost or delayed it, and nothing shows that anyone but the reference MTA answered",
			where, stalledOrLost(err, o.deadline), describe(err))}
	}
	// A foreign certificate is evidence enough, whatever came after it.
	if o.tls != nil && !o.tls.PinValid {
		failure := FailureCertificateMismatch
		if h := o.first; h != nil && h.err == nil {
			failure = proofFailureClass(h)
		}
		return outcome{verdict.Intercepted, failure, fmt.Sprintf(
			"something answered with a TLS certificate (%s) that does not carry the reference MTA's key, and no valid statement of it", o.tls.describe())}
	}
	switch {
	case o.err != nil && classifyDialog(o.err) == FailureProtocolError:
		return third(FailureProtocolError, "something answered, but broke the protocol: "+describe(o.err))
	case o.err != nil && o.phase == PhaseTLSHandshake:
		return lost(o.err, "the TLS handshake")
	case o.err != nil:
		return lost(o.err, "the greeting")
	case o.bannerCode != 220:
		return third(FailureProofMissing, fmt.Sprintf("something answered with a %d greeting, not the reference MTA", o.bannerCode))
	case o.first == nil:
		return outcome{verdict.Inconclusive, FailureConnectionLost, "the dialog ended after the greeting, before the EHLO"}
	case o.first.err != nil && classifyDialog(o.first.err) == FailureProtocolError:
		return third(FailureProtocolError, "something answered, but broke the SMTP dialog: "+describe(o.first.err))
	case o.first.err != nil && !o.ours && !pinned:
		return outcome{verdict.Intercepted, classifyDialog(o.first.err), fmt.Sprintf(
			"something greeted with a banner that is not the reference MTA's, then the EHLO reply %s", stalledOrLost(o.first.err, o.deadline))}
	case o.first.err != nil:
		return lost(o.first.err, "the EHLO reply")
	}
	if errors.Is(o.first.proofErr, errNoProof) {
		return third(FailureProofMissing, "an SMTP server answered, but not the reference MTA: "+o.first.proofErr.Error())
	}
	return third(FailureProofInvalid, "an SMTP server answered with a statement that does not hold: "+o.first.proofErr.Error())
}

// proofFailureClass is the failure class of a complete EHLO reply whose
// statement is not valid.
func proofFailureClass(h *hello) string {
	if errors.Is(h.proofErr, errNoProof) {
		return FailureProofMissing
	}
	return FailureProofInvalid
}

// stalledOrLost says how err ended a phase.
func stalledOrLost(err error, deadline time.Duration) string {
	if isTimeout(err) {
		return fmt.Sprintf("did not complete within the %s deadline", deadline.Round(time.Millisecond))
	}
	return "was cut off"
}

// describe names a certificate for a detail: its subject and issuer.
func (t *TLS) describe() string {
	return fmt.Sprintf("subject %q, issuer %q", t.Subject, t.Issuer)
}

// decideDial decides a probe that got no TCP connection. Only the control
// port of the same host, answering in the same round and listing the port
// as served, turns a failure into BLOCKED.
func decideDial(err error, port uint16, ctl Control, timeout time.Duration, dials int) outcome {
	failure := classifyDial(err)
	what := dialPhrase(failure, err, timeout, dials)
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

func dialPhrase(failure string, err error, timeout time.Duration, dials int) string {
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
		if dials > 1 {
			return fmt.Sprintf("none of %d connection attempts got an answer within %s", dials, timeout)
		}
		return fmt.Sprintf("the connection attempt got no answer within %s", timeout)
	}
	return "the connection failed: " + describe(err)
}
