// Package report turns a round of probe results into what leaves the
// probe engine: the messages of proto/op25b/v1 (this is the one place where
// probe types become protobuf) and the human-readable report of
// `op25b-agent check`.
package report

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/agent/probe"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Round is one round of probes as the agent reports it.
type Round struct {
	ID           string // UUIDv7
	AgentVersion string
	Started      time.Time
	Finished     time.Time
	Results      []probe.Result
}

// ProbeReport returns the wire form of round.
func ProbeReport(round Round) *op25bv1.ProbeReport {
	m := &op25bv1.ProbeReport{
		RoundId:      round.ID,
		AgentVersion: round.AgentVersion,
		StartedAt:    timestamp(round.Started),
		FinishedAt:   timestamp(round.Finished),
	}
	for _, r := range round.Results {
		m.Results = append(m.Results, ProbeResult(r, round.ID, round.AgentVersion))
	}
	return m
}

// ProbeResult returns the wire form of one result of round roundID. The
// agent and schedule fields are the daemon's to set.
func ProbeResult(r probe.Result, roundID, agentVersion string) *op25bv1.ProbeResult {
	m := &op25bv1.ProbeResult{
		ResultId:      r.ID,
		RefmtaId:      r.RefMTA,
		Port:          uint32(r.Port),
		Family:        family(r.Family),
		Verdict:       op25bv1.Verdict(r.Verdict), // numbered alike, by contract
		Failure:       r.Failure,
		Detail:        r.Detail,
		StartedAt:     timestamp(r.Started),
		Nonce:         r.Nonce,
		AgentVersion:  agentVersion,
		TargetAddress: addr(r.Addr),
		RoundId:       roundID,
		Phase:         r.Phase,
		Timings:       timings(r.Timings),
		Evidence:      evidence(r.Evidence),
		Tls:           tlsDetails(r.TLS),
		Control: &op25bv1.ControlObservation{
			Reached:        r.Control.Reached,
			Failure:        r.Control.Failure,
			ObservedSource: addr(r.Control.ObservedSource),
			ServedPorts:    ports(r.Control.ServedPorts),
			Rtt:            duration(r.Control.RTT),
			Port:           uint32(r.Control.Port),
			Statement:      r.Control.Statement,
			Attempts:       uint32(r.Control.Attempts),
		},
	}
	for _, a := range r.Attempts {
		m.Attempts = append(m.Attempts, &op25bv1.ProbeAttempt{
			Verdict:   op25bv1.Verdict(a.Verdict),
			Failure:   a.Failure,
			Detail:    a.Detail,
			StartedAt: timestamp(a.Started),
			Timings:   timings(a.Timings),
			Evidence:  evidence(a.Evidence),
			Tls:       tlsDetails(a.TLS),
			Nonce:     a.Nonce,
			Phase:     a.Phase,
			Deadline:  duration(a.Deadline),
			Dials:     uint32(a.Dials),
		})
	}
	return m
}

func timings(t probe.Timings) *op25bv1.Timings {
	return &op25bv1.Timings{
		Connect:      duration(t.Connect),
		Banner:       duration(t.Banner),
		Ehlo:         duration(t.EHLO),
		TlsHandshake: duration(t.TLSHandshake),
		Total:        duration(t.Total),
	}
}

func evidence(e probe.Evidence) *op25bv1.Evidence {
	return &op25bv1.Evidence{
		Banner:             e.Banner,
		EhloCapabilities:   e.Capabilities,
		Statement:          e.Statement,
		ProofValid:         e.ProofValid,
		ProofError:         e.ProofError,
		ObservedSource:     addr(e.ObservedSource),
		SignedCapabilities: e.SignedCapabilities,
		StarttlsOffered:    e.STARTTLSOffered,
	}
}

func tlsDetails(t *probe.TLS) *op25bv1.TLSDetails {
	if t == nil {
		return nil
	}
	return &op25bv1.TLSDetails{
		Version:                  tls.VersionName(t.Version),
		CipherSuite:              tls.CipherSuiteName(t.CipherSuite),
		PeerCertificateSha256:    t.CertificateSHA256,
		PinValid:                 t.PinValid,
		PeerCertificateSubject:   t.Subject,
		PeerCertificateIssuer:    t.Issuer,
		PeerCertificateSans:      t.SANs,
		PeerCertificateNotBefore: timestamp(t.NotBefore),
		PeerCertificateNotAfter:  timestamp(t.NotAfter),
		PeerChainSha256:          t.ChainSHA256,
	}
}

func family(f probe.Family) op25bv1.AddressFamily {
	switch f {
	case probe.IPv4:
		return op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4
	case probe.IPv6:
		return op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6
	}
	return op25bv1.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED
}

// timestamp, duration and addr leave a field unset for a zero value: in
// the wire contract an unset field means "did not happen".
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func ports(ps []uint16) []uint32 {
	var out []uint32
	for _, p := range ps {
		out = append(out, uint32(p))
	}
	return out
}

// WriteJSON writes round as indented protojson with enum names, the form of
// `op25b-agent check --format json`.
func WriteJSON(w io.Writer, round Round) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(ProbeReport(round))
	if err != nil {
		return fmt.Errorf("report: encode: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// WriteTable writes round for a person: one row per port probe, then one
// line per control probe, which says what the verdicts rest on.
func WriteTable(w io.Writer, round Round) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// DETAIL comes last: it is long and ragged, and would push any
	// column after it off the screen.
	fmt.Fprintln(tw, "REFMTA\tFAMILY\tPORT\tVERDICT\tLATENCY\tATTEMPTS\tDETAIL")
	type key struct {
		refmta string
		addr   netip.Addr
	}
	var controls []key
	seen := map[key]probe.Control{}
	for _, r := range round.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", r.RefMTA, r.Family, r.Port, r.Verdict, latency(r.Timings.Connect), max(1, len(r.Attempts)), r.Detail)
		k := key{r.RefMTA, r.Addr}
		if _, ok := seen[k]; !ok {
			controls = append(controls, k)
			seen[k] = r.Control
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var b strings.Builder
	if len(controls) > 0 {
		b.WriteString("\n")
	}
	for _, k := range controls {
		c := seen[k]
		fmt.Fprintf(&b, "control %s %s port %d (%s): ", k.refmta, k.addr, c.Port, probe.FamilyOf(k.addr))
		if !c.Reached {
			fmt.Fprintf(&b, "not reached (%s); nothing on this address can be called blocked\n", c.Failure)
			continue
		}
		fmt.Fprintf(&b, "reached in %s; the reference MTA saw you as %s; it serves ports %s\n",
			latency(c.RTT), c.ObservedSource, joinPorts(c.ServedPorts))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// latency formats a connect time, "-" when there was no connection.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

func joinPorts(ps []uint16) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// Progress returns a probe.Config.Progress that tells a person on w how a
// round of total probes (control probes included) goes.
func Progress(w io.Writer, total int) func(probe.Event) {
	done := 0
	return func(e probe.Event) {
		what := fmt.Sprintf("%s %s port %d (%s)", e.RefMTA, e.Addr, e.Port, probe.FamilyOf(e.Addr))
		if e.Control {
			what = fmt.Sprintf("%s %s control port %d (%s)", e.RefMTA, e.Addr, e.Port, probe.FamilyOf(e.Addr))
		}
		if !e.Done {
			if e.Attempt > 1 {
				fmt.Fprintf(w, "probing %s again (attempt %d)...\n", what, e.Attempt)
				return
			}
			fmt.Fprintf(w, "probing %s...\n", what)
			return
		}
		done++
		outcome := e.Verdict.String()
		switch {
		case e.Control && e.Failure == "":
			outcome = "reached"
		case e.Control:
			outcome = "not reached (" + e.Failure + ")"
		case e.Failure != "":
			outcome += " (" + e.Failure + ")"
		}
		fmt.Fprintf(w, "[%d/%d] %s: %s\n", done, total, what, outcome)
	}
}
