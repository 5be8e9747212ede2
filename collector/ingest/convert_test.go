package ingest

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

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
