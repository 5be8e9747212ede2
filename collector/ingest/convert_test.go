package ingest

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

type keys map[string]ed25519.PublicKey

func (k keys) RefMTAKey(id string) (ed25519.PublicKey, bool) { v, ok := k[id]; return v, ok }

type fixedASN struct{}

func (fixedASN) Attribute(a netip.Addr, _ time.Time) Attribution {
	if a.Is4() {
		return Attribution{ASN: 64500, Snapshot: 7}
	}
	return Attribution{ASN: 64501, Snapshot: 7}
}

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newConverter(t *testing.T) (*Converter, ed25519.PrivateKey) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &Converter{Keys: keys{"ref": pub}, ASN: fixedASN{}, Limits: DefaultLimits, Now: func() time.Time { return now }}, priv
}

func result(at time.Time) *op25bv1.ProbeResult {
	return &op25bv1.ProbeResult{ResultId: uuidv7.New(at), RefmtaId: "ref", Port: 25,
		Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_OPEN,
		StartedAt: timestamppb.New(at), Nonce: []byte("0123456789abcdef")}
}

func TestConvertRejectsPerResult(t *testing.T) {
	c, _ := newConverter(t)
	good := result(now.Add(-time.Minute))
	mutate := func(f func(*op25bv1.ProbeResult)) *op25bv1.ProbeResult {
		r := result(now.Add(-time.Minute))
		f(r)
		return r
	}
	bad := map[string]*op25bv1.ProbeResult{
		"invalid verdict 99": mutate(func(r *op25bv1.ProbeResult) { r.Verdict = 99 }),
		"invalid verdict 0":  mutate(func(r *op25bv1.ProbeResult) { r.Verdict = 0 }),
		"invalid address":    mutate(func(r *op25bv1.ProbeResult) { r.Family = 9 }),
		"invalid port":       mutate(func(r *op25bv1.ProbeResult) { r.Port = 70000 }),
		"in the future":      result(now.Add(time.Hour)),
		"ago, older":         result(now.Add(-40 * 24 * time.Hour)),
		"not a UUIDv7":       mutate(func(r *op25bv1.ProbeResult) { r.ResultId = "x" }),
		"started_at":         mutate(func(r *op25bv1.ProbeResult) { r.StartedAt = timestamppb.New(now.Add(-time.Hour)) }),
		"uploading agent":    mutate(func(r *op25bv1.ProbeResult) { r.AgentId = "someone-else" }),
		"refmta_id is empty": mutate(func(r *op25bv1.ProbeResult) { r.RefmtaId = "" }),
		"refmta_id is not":   mutate(func(r *op25bv1.ProbeResult) { r.RefmtaId = strings.Repeat("r", 65) }),
	}
	in := []*op25bv1.ProbeResult{good}
	for _, r := range bad {
		in = append(in, r)
	}
	in = append(in, good) // duplicated id
	b := c.Convert(in, "agent-1", netip.Addr{})
	if len(b.Results) != 1 || b.Results[0].ID != good.ResultId {
		t.Fatalf("stored %d results; want only the good one", len(b.Results))
	}
	reasons := map[string]bool{}
	for _, rej := range b.Rejected {
		reasons[rej.Reason] = true
	}
	for want := range bad {
		found := false
		for got := range reasons {
			found = found || strings.Contains(got, want)
		}
		if !found {
			t.Errorf("no rejection says %q; reasons: %v", want, reasons)
		}
	}
	if !reasons["duplicate result_id within the batch"] || len(b.Rejected) != len(bad)+1 {
		t.Errorf("rejections = %d %v; want %d including the duplicate", len(b.Rejected), reasons, len(bad)+1)
	}
}

// TestConvertMakesTextStorable: whatever text a result carries, what the
// collector stores is valid UTF-8 without NUL, within its bound, cut
// between characters; PostgreSQL refusing one field would fail the batch.
func TestConvertMakesTextStorable(t *testing.T) {
	c, _ := newConverter(t)
	// The gRPC server makes the text of a message valid UTF-8
	// (collector/api); NUL and long text get through.
	for _, text := range []string{strings.Repeat("日", 400), "a\x00b\x00", strings.Repeat("本", 30) + "\uFFFD"} {
		r := result(now.Add(-time.Minute))
		r.Verdict = op25bv1.Verdict_VERDICT_INTERCEPTED
		r.Failure, r.Detail, r.RoundId, r.ScheduleVersion, r.AgentVersion = text, text, text, text, text
		r.Evidence = &op25bv1.Evidence{Banner: text}
		b := c.Convert([]*op25bv1.ProbeResult{r}, "agent-1", netip.Addr{})
		if len(b.Results) != 1 {
			t.Fatalf("text %q: rejected %v; want the result stored", text, b.Rejected)
		}
		got := b.Results[0]
		for name, f := range map[string]struct {
			s   string
			max int
		}{"failure": {got.Failure, 64}, "detail": {got.Detail, 1024}, "round_id": {got.RoundID, 64},
			"schedule_version": {got.ScheduleVersion, 64}, "agent_version": {got.AgentVersion, 64}, "public_evidence": {got.PublicEvidence, maxEvidence}} {
			if !utf8.ValidString(f.s) || strings.ContainsRune(f.s, 0) || len(f.s) > f.max {
				t.Errorf("text %q: %s stored as %q; want valid UTF-8 without NUL of at most %d bytes", text, name, f.s, f.max)
			}
		}
	}
	// Text that is not UTF-8 cannot be kept as evidence: that result alone
	// is rejected.
	bad, good := result(now.Add(-time.Minute)), result(now.Add(-time.Minute))
	bad.Detail = "a\xffb"
	b := c.Convert([]*op25bv1.ProbeResult{bad, good}, "agent-1", netip.Addr{})
	if len(b.Results) != 1 || b.Results[0].ID != good.ResultId || len(b.Rejected) != 1 || b.Rejected[0].ResultID != bad.ResultId {
		t.Errorf("a result that is not UTF-8 next to a good one: stored %d, rejected %v; want the good one stored, the other rejected", len(b.Results), b.Rejected)
	}
}

func TestEgressFromVerifiedStatementsOnly(t *testing.T) {
	c, key := newConverter(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	at := now.Add(-time.Minute)
	stmt := func(k ed25519.PrivateKey, src string, nonce []byte, when time.Time) string {
		return proof.Sign(k, proof.Statement{Nonce: nonce, Source: netip.MustParseAddr(src), Port: 25, Time: when})
	}
	nonce := []byte("0123456789abcdef")
	ctlNonce := []byte("fedcba9876543210")
	peer := netip.MustParseAddr("203.0.113.9")
	for _, tc := range []struct {
		name     string
		evidence string
		control  string
		want     string
		source   store.EgressSource
	}{
		// A proxy re-originated the session: the control port saw the agent.
		{"control before port statement", stmt(key, "203.0.113.2", nonce, at), stmt(key, "198.51.100.8", ctlNonce, at), "198.51.100.8", store.EgressControl},
		{"port statement without control", stmt(key, "198.51.100.7", nonce, at), "", "198.51.100.7", store.EgressStatement},
		{"control statement", "", stmt(key, "198.51.100.8", ctlNonce, at), "198.51.100.8", store.EgressControl},
		{"forged port statement", stmt(other, "192.0.2.1", nonce, at), "", "203.0.113.9", store.EgressIngest},
		{"statement for another nonce", stmt(key, "192.0.2.1", ctlNonce, at), "", "203.0.113.9", store.EgressIngest},
		{"stale control statement", "", stmt(key, "192.0.2.1", ctlNonce, at.Add(-time.Hour)), "203.0.113.9", store.EgressIngest},
	} {
		r := result(at)
		r.Evidence = &op25bv1.Evidence{Statement: tc.evidence, ObservedSource: "192.0.2.99"}
		r.Control = &op25bv1.ControlObservation{Statement: tc.control, ObservedSource: "192.0.2.99"}
		b := c.Convert([]*op25bv1.ProbeResult{r}, "agent-1", peer)
		if len(b.Results) != 1 {
			t.Fatalf("%s: rejected %v", tc.name, b.Rejected)
		}
		got := b.Results[0]
		if got.Egress.String() != tc.want || got.EgressSource != tc.source {
			t.Errorf("%s: egress = %s (source %d); want %s (source %d)", tc.name, got.Egress, got.EgressSource, tc.want, tc.source)
		}
		if got.ASN != 64500 || got.ASNSnapshot != 7 || got.Prefix.Bits() != 24 || !got.Prefix.Contains(got.Egress) {
			t.Errorf("%s: asn %d snapshot %d prefix %s; want 64500, 7, the /24 of %s", tc.name, got.ASN, got.ASNSnapshot, got.Prefix, got.Egress)
		}
	}
	// An IPv6 result whose only address is an IPv4 peer has no egress.
	r := result(at)
	r.Family = op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6
	if got := c.Convert([]*op25bv1.ProbeResult{r}, "agent-1", peer).Results[0]; got.Egress.IsValid() || got.ASN != 0 {
		t.Errorf("IPv6 result attributed to IPv4 peer: %s AS%d", got.Egress, got.ASN)
	}
}

// TestOurRefusalIsNotInterception: an older agent calls a signed refusal of
// our reference MTA interception; the collector stores it as INCONCLUSIVE
// refmta_busy with no public evidence, and keeps what the agent sent.
func TestOurRefusalIsNotInterception(t *testing.T) {
	c, key := newConverter(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	at := now.Add(-time.Minute)
	nonce := []byte("0123456789abcdef")
	refusal := func(k ed25519.PrivateKey, reason string) string {
		return proof.Sign(k, proof.Statement{Nonce: nonce, Source: netip.MustParseAddr("198.51.100.7"), Port: 25, Time: at, Refused: reason})
	}
	for _, tc := range []struct {
		name      string
		verdict   op25bv1.Verdict
		statement string
		want      op25bv1.Verdict
		failure   string
	}{
		{"signed refusal called interception", op25bv1.Verdict_VERDICT_INTERCEPTED, refusal(key, proof.RefusedRate), op25bv1.Verdict_VERDICT_INCONCLUSIVE, FailureRefMTABusy},
		{"signed refusal called tampering", op25bv1.Verdict_VERDICT_TAMPERED, refusal(key, proof.RefusedSessions), op25bv1.Verdict_VERDICT_INCONCLUSIVE, FailureRefMTABusy},
		{"refusal signed by another key", op25bv1.Verdict_VERDICT_INTERCEPTED, refusal(other, proof.RefusedRate), op25bv1.Verdict_VERDICT_INTERCEPTED, "proof_invalid"},
		{"served statement", op25bv1.Verdict_VERDICT_INTERCEPTED, refusal(key, ""), op25bv1.Verdict_VERDICT_INTERCEPTED, "proof_invalid"},
		{"no statement", op25bv1.Verdict_VERDICT_INTERCEPTED, "", op25bv1.Verdict_VERDICT_INTERCEPTED, "proof_invalid"},
		{"blocked keeps its verdict", op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, refusal(key, proof.RefusedRate), op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, "proof_invalid"},
	} {
		r := result(at)
		r.Verdict, r.Failure = tc.verdict, "proof_invalid"
		r.Evidence = &op25bv1.Evidence{Banner: "220 ref.example ESMTP", Statement: tc.statement}
		b := c.Convert([]*op25bv1.ProbeResult{r}, "agent-1", netip.Addr{})
		if len(b.Results) != 1 {
			t.Fatalf("%s: rejected %v", tc.name, b.Rejected)
		}
		got := b.Results[0]
		if op25bv1.Verdict(got.Verdict) != tc.want || got.Failure != tc.failure {
			t.Errorf("%s: stored %v %q; want %v %q", tc.name, op25bv1.Verdict(got.Verdict), got.Failure, tc.want, tc.failure)
		}
		if tc.failure == FailureRefMTABusy {
			if got.PublicEvidence != "" {
				t.Errorf("%s: public evidence %q; want none", tc.name, got.PublicEvidence)
			}
			var sent op25bv1.ProbeResult
			if err := proto.Unmarshal(got.Evidence, &sent); err != nil || sent.GetVerdict() != tc.verdict || sent.GetEvidence().GetStatement() != tc.statement {
				t.Errorf("%s: evidence blob = %v %v; want the result as the agent sent it", tc.name, sent.GetVerdict(), err)
			}
		} else if tc.verdict == op25bv1.Verdict_VERDICT_INTERCEPTED && got.PublicEvidence == "" {
			t.Errorf("%s: interception published without its evidence", tc.name)
		}
	}
}

func TestRefMTANetwork(t *testing.T) {
	c, _ := newConverter(t)
	at := now.Add(-time.Minute)
	for _, tc := range []struct {
		target string
		family op25bv1.AddressFamily
		asn    uint32
		prefix string
	}{
		{"192.0.2.25", op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, 64500, "192.0.2.0/24"},
		{"2001:db8:1:2::25", op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6, 64501, "2001:db8:1::/48"},
		{"192.0.2.25", op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6, 0, "invalid Prefix"},
		{"", op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, 0, "invalid Prefix"},
		{"ref.example", op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, 0, "invalid Prefix"},
	} {
		r := result(at)
		r.TargetAddress, r.Family = tc.target, tc.family
		got := c.Convert([]*op25bv1.ProbeResult{r}, "agent-1", netip.Addr{}).Results[0]
		if got.RefMTAASN != tc.asn || got.RefMTAPrefix.String() != tc.prefix {
			t.Errorf("target %q (%v): network AS%d %s; want AS%d %s", tc.target, tc.family, got.RefMTAASN, got.RefMTAPrefix, tc.asn, tc.prefix)
		}
	}
}
