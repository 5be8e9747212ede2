// Package ingest turns the results agents upload into stored rows: it
// validates each result on its own (a bad one is rejected with a reason,
// the rest of the batch is stored), decides the egress address the servers
// observed, attributes it to an ASN, and acknowledges only what is
// committed. See docs/pipeline.md.
package ingest

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/asn"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/clip"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Keys gives the public keys of enrolled reference MTAs, with which the
// collector verifies the statements inside results.
type Keys interface {
	RefMTAKey(id string) (ed25519.PublicKey, bool)
}

// Attribution is the ASN of an address in the snapshot in force.
type Attribution struct {
	ASN      uint32
	Snapshot int64
}

// Attributor maps an egress address to its ASN at measurement time.
type Attributor interface {
	Attribute(a netip.Addr, at time.Time) Attribution
}

// Limits bound what the collector accepts.
type Limits struct {
	// MaxFuture is how far ahead of the collector's clock a result may be
	// (agents' clocks drift); MaxAge how old (a spool delivered after a long
	// outage).
	MaxFuture, MaxAge time.Duration
}

// maxID bounds the ids and versions a result names, bytes.
const maxID = 64

// controlWindow is how far a control statement may be from the result.
const controlWindow = 10 * time.Minute

// DefaultLimits accept results from 30 days ago to 5 minutes ahead.
var DefaultLimits = Limits{MaxFuture: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour}

// Rejection is a result refused for good, with the reason the agent logs.
type Rejection struct {
	ResultID string
	Reason   string
}

// Converter validates and converts results.
type Converter struct {
	Keys   Keys
	ASN    Attributor
	Limits Limits
	Now    func() time.Time
}

// Batch is what one upload of one agent becomes.
type Batch struct {
	Results  []store.Result
	Rejected []Rejection
}

// Convert validates every result of a batch uploaded by agentID over a
// connection from peer.
func (c *Converter) Convert(in []*op25bv1.ProbeResult, agentID string, peer netip.Addr) Batch {
	var b Batch
	seen := make(map[string]bool, len(in))
	now := c.Now()
	for _, pr := range in {
		r, reason := c.convert(pr, agentID, peer, now)
		if reason == "" && seen[r.ID] {
			reason = "duplicate result_id within the batch"
		}
		if reason != "" {
			b.Rejected = append(b.Rejected, Rejection{ResultID: pr.GetResultId(), Reason: reason})
			continue
		}
		seen[r.ID] = true
		b.Results = append(b.Results, r)
	}
	return b
}

func (c *Converter) convert(pr *op25bv1.ProbeResult, agentID string, peer netip.Addr, now time.Time) (store.Result, string) {
	var r store.Result
	_, at, err := uuidv7.Parse(pr.GetResultId())
	if err != nil {
		return r, "result_id is not a UUIDv7"
	}
	switch {
	case at.After(now.Add(c.Limits.MaxFuture)):
		return r, fmt.Sprintf("measured %s in the future (agent clock ahead?)", at.Sub(now).Round(time.Second))
	case at.Before(now.Add(-c.Limits.MaxAge)):
		return r, fmt.Sprintf("measured %s ago, older than the %s accepted", now.Sub(at).Round(time.Second), c.Limits.MaxAge)
	}
	if s := pr.GetStartedAt(); s != nil && s.AsTime().Sub(at).Abs() > time.Minute {
		return r, "started_at disagrees with the time in result_id"
	}
	v := pr.GetVerdict()
	if _, known := op25bv1.Verdict_name[int32(v)]; !known || v == op25bv1.Verdict_VERDICT_UNSPECIFIED {
		return r, fmt.Sprintf("invalid verdict %d", int32(v))
	}
	var family uint8
	switch pr.GetFamily() {
	case op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4:
		family = 4
	case op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6:
		family = 6
	default:
		return r, fmt.Sprintf("invalid address family %d", int32(pr.GetFamily()))
	}
	if pr.GetPort() == 0 || pr.GetPort() > 65535 {
		return r, fmt.Sprintf("invalid port %d", pr.GetPort())
	}
	if pr.GetAgentId() != "" && pr.GetAgentId() != agentID {
		return r, "agent_id is not the uploading agent's"
	}
	if pr.GetRefmtaId() == "" {
		return r, "refmta_id is empty"
	}
	if clip.Text(pr.GetRefmtaId(), maxID) != pr.GetRefmtaId() {
		return r, fmt.Sprintf("refmta_id is not a reference MTA's id (over %d bytes, or not text)", maxID)
	}
	// The evidence keeps the result as the agent sent it, whatever the
	// collector decides below.
	evidence, err := proto.Marshal(pr)
	if err != nil {
		return r, "cannot encode: " + err.Error()
	}
	r = store.Result{
		ID: pr.GetResultId(), MeasuredAt: at, AgentID: agentID, RefMTA: pr.GetRefmtaId(),
		Port: uint16(pr.GetPort()), Family: family, Verdict: uint8(v),
		Failure: clip.Text(pr.GetFailure(), 64), Detail: clip.Text(pr.GetDetail(), 1024), Nonce: pr.GetNonce(),
		RoundID: clip.Text(pr.GetRoundId(), maxID), ScheduleVersion: clip.Text(pr.GetScheduleVersion(), maxID),
		AgentVersion: clip.Text(pr.GetAgentVersion(), 64), Evidence: evidence, PublicEvidence: publicEvidence(pr),
	}
	if reason := c.ourRefusal(pr); reason != "" {
		r.Verdict, r.Failure, r.PublicEvidence = uint8(op25bv1.Verdict_VERDICT_INCONCLUSIVE), FailureRefMTABusy, ""
		r.Detail = fmt.Sprintf("the reference MTA refused the session (%s) in a statement signed with its key; the agent took the refusal for a third party's", reason)
	}
	r.Egress, r.EgressSource = c.egress(pr, family, peer, at)
	if r.Egress.IsValid() {
		r.Prefix = asn.PublicPrefix(r.Egress)
		if c.ASN != nil {
			a := c.ASN.Attribute(r.Egress, at)
			r.ASN, r.ASNSnapshot = a.ASN, a.Snapshot
		}
	}
	// The reference MTA's network, for the comparison across reference
	// MTAs of one round (store.InsertResults).
	if a, err := netip.ParseAddr(pr.GetTargetAddress()); err == nil && familyOf(a) == family {
		r.RefMTAPrefix = asn.PublicPrefix(a)
		if c.ASN != nil {
			r.RefMTAASN = c.ASN.Attribute(a.Unmap(), at).ASN
		}
	}
	return r, ""
}

// FailureRefMTABusy is the failure of a probe that the reference MTA
// refused (busy, or the source over its rate), as the agent's probe engine
// names it (agent/probe); the collector does not link the probe engine.
const FailureRefMTABusy = "refmta_busy"

// ourRefusal returns why the reference MTA refused the probe's session,
// when an INTERCEPTED or TAMPERED result carries a statement of refusal
// that verifies with that reference MTA's key: older agents do not know
// refusals and call them interception, which the collector must never
// publish. It returns "" otherwise.
func (c *Converter) ourRefusal(pr *op25bv1.ProbeResult) string {
	if v := pr.GetVerdict(); v != op25bv1.Verdict_VERDICT_INTERCEPTED && v != op25bv1.Verdict_VERDICT_TAMPERED || c.Keys == nil {
		return ""
	}
	key, ok := c.Keys.RefMTAKey(pr.GetRefmtaId())
	if !ok {
		return ""
	}
	st, err := proof.Verify(key, pr.GetEvidence().GetStatement())
	if err != nil {
		return ""
	}
	return st.Refused
}

// egress decides the source address the servers observed: the control
// port's signed statement of the same round (the agent's own egress, even
// when a proxy re-originated the SMTP session), else the reference MTA's
// signed statement for this probe, else the agent's connection to the
// collector when it is of the same family. The agent's own word is never
// used.
func (c *Converter) egress(pr *op25bv1.ProbeResult, family uint8, peer netip.Addr, at time.Time) (netip.Addr, store.EgressSource) {
	key, ok := ed25519.PublicKey(nil), false
	if c.Keys != nil {
		key, ok = c.Keys.RefMTAKey(pr.GetRefmtaId())
	}
	if ok {
		// The control statement carries no nonce of this result; its time
		// keeps an old statement from being passed off as this round's.
		if st, err := proof.Verify(key, pr.GetControl().GetStatement()); err == nil && familyOf(st.Source) == family &&
			st.Time.Sub(at).Abs() < controlWindow {
			return st.Source, store.EgressControl
		}
		if st, err := proof.Verify(key, pr.GetEvidence().GetStatement()); err == nil && string(st.Nonce) == string(pr.GetNonce()) && familyOf(st.Source) == family {
			return st.Source, store.EgressStatement
		}
	}
	if peer.IsValid() && familyOf(peer) == family {
		return peer.Unmap(), store.EgressIngest
	}
	return netip.Addr{}, store.EgressUnknown
}

func familyOf(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}
