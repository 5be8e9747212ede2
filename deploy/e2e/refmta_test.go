package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/asn"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// refmtaKey is an enrolled reference MTA: its id, key and the address
// agents dial.
type refmtaKey struct {
	id     string
	key    ed25519.PrivateKey
	target string
}

// spoolRounds appends rounds of results as an agent behind egress measures
// them against both reference MTAs: verdicts[i] is the port-25 verdict at
// refs[i]; 587 and 465 are OPEN. Every result carries the control port's
// statement signed by its reference MTA, from which the collector takes
// the egress address.
func spoolRounds(t *testing.T, sp *spool.Spool, agentID string, egress netip.Addr, refs []refmtaKey, verdicts []op25bv1.Verdict, rounds int) {
	t.Helper()
	for range rounds {
		at := time.Now()
		round := uuidv7.New(at)
		var recs []spool.Record
		for i, ref := range refs {
			ctl := proof.Sign(ref.key, proof.Statement{Nonce: make([]byte, proof.NonceLen), Source: egress, Port: 443, Time: at})
			for _, port := range []uint32{25, 587, 465} {
				v := op25bv1.Verdict_VERDICT_OPEN
				if port == 25 {
					v = verdicts[i]
				}
				pr := &op25bv1.ProbeResult{ResultId: uuidv7.New(time.Now()), AgentId: agentID, RefmtaId: ref.id, Port: port,
					Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: v, StartedAt: timestamppb.New(at), RoundId: round,
					TargetAddress: ref.target, Control: &op25bv1.ControlObservation{Reached: true, Port: 443, Statement: ctl}}
				b, _ := proto.Marshal(pr)
				recs = append(recs, spool.Record{ID: pr.ResultId, Payload: b})
			}
		}
		if err := sp.AppendBatch(recs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultyRefMTAThroughIngest: agents upload through gRPC ingest, in
// batches smaller than a round, to a collector with two reference MTAs in
// different ASNs, one of which cannot be reached on port 25. The open
// network stays OPEN, the OP25B network OP25B, the blocks are charged to
// the faulty reference MTA and it is flagged, before and after a rebuild.
// A signed refusal that an older agent calls interception is stored as
// INCONCLUSIVE.
func TestFaultyRefMTAThroughIngest(t *testing.T) {
	ctx := context.Background()
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{})
	dir := t.TempDir()
	pfx2as := filepath.Join(dir, "pfx2as.txt")
	if err := os.WriteFile(pfx2as, []byte("198.51.0.0\t16\t64510\n198.18.0.0\t16\t64511\n192.0.2.0\t24\t65001\n203.0.113.0\t24\t65002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := asn.Load(pfx2as, asn.Detect)
	if err != nil {
		t.Fatal(err)
	}
	c.ASN.Add(table, 1, time.Now().Add(-time.Hour))
	var refs []refmtaKey
	for i, target := range []string{"192.0.2.25", "203.0.113.25"} {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		id, _, err := c.Auth.Enroll(ctx, c.Token(t, auth.RefMTA, 1), auth.RefMTA, pub, fmt.Sprint("ref-", i), "test")
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, refmtaKey{id, key, target})
	}
	good, faulty := refs[0], refs[1]
	const rounds = 12 // x 3 agents: enough results to flag
	blocked, open := op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, op25bv1.Verdict_VERDICT_OPEN
	var wg sync.WaitGroup
	for a := range 6 {
		d, sp := agent(t, []string{c.Addr}, c.CAFile, c.Token(t, auth.Agent, 1))
		d.Batch = 4 // smaller than a round of 6 results
		if a < 3 {  // AS64510: open; the faulty reference MTA's port 25 is not
			spoolRounds(t, sp, d.Identity.ID, netip.AddrFrom4([4]byte{198, 51, byte(a), 7}), refs, []op25bv1.Verdict{open, blocked}, rounds)
		} else { // AS64511: OP25B, both reference MTAs agree
			spoolRounds(t, sp, d.Identity.ID, netip.AddrFrom4([4]byte{198, 18, byte(a), 7}), refs, []op25bv1.Verdict{blocked, blocked}, rounds)
		}
		if a == 0 { // an older agent calls our signed refusal interception
			at := time.Now()
			pr := &op25bv1.ProbeResult{ResultId: uuidv7.New(at), AgentId: d.Identity.ID, RefmtaId: good.id, Port: 587,
				Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_INTERCEPTED, Failure: "proof_invalid",
				StartedAt: timestamppb.New(at), TargetAddress: good.target, Evidence: &op25bv1.Evidence{Banner: "220 ref ESMTP",
					Statement: proof.Sign(good.key, proof.Statement{Nonce: make([]byte, proof.NonceLen),
						Source: netip.MustParseAddr("198.51.0.7"), Port: 587, Time: at, Refused: proof.RefusedRate})}}
			b, _ := proto.Marshal(pr)
			if err := sp.AppendBatch([]spool.Record{{ID: pr.ResultId, Payload: b}}); err != nil {
				t.Fatal(err)
			}
		}
		runCtx, cancel := context.WithCancel(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(runCtx); err != nil {
				t.Errorf("agent: %v", err)
			}
		}()
		testenv.WaitFor(t, "the agent's spool delivered", time.Minute, func() bool { return sp.Len() == 0 })
		cancel()
	}
	wg.Wait()

	check := func(when string) {
		asns, err := c.Dataset.ListASNs(ctx, &op25bv1.ListASNsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		classes := map[uint32]op25bv1.PolicyClass{}
		for _, a := range asns.GetAsns() {
			classes[a.GetAsn()] = a.GetPolicyClass()
		}
		if classes[64510] != op25bv1.PolicyClass_POLICY_CLASS_OPEN || classes[64511] != op25bv1.PolicyClass_POLICY_CLASS_OP25B {
			t.Errorf("%s: classes %v; want AS64510 OPEN, AS64511 OP25B", when, classes)
		}
		var charged, chargedElsewhere int
		c.Store.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE refmta_id = $1 AND port = 25 AND asn = 64510 AND verdict = 2),
			count(*) FILTER (WHERE NOT (refmta_id = $1 AND port = 25 AND asn = 64510)) FROM results WHERE refmta_charged`, faulty.id).Scan(&charged, &chargedElsewhere)
		if charged != 3*rounds || chargedElsewhere != 0 {
			t.Errorf("%s: charged %d of the faulty reference MTA's blocks in AS64510 and %d other results; want %d and 0 (every round compared whole)", when, charged, chargedElsewhere, 3*rounds)
		}
		info, err := c.Dataset.GetInfo(ctx, &op25bv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var flagged []string
		for _, r := range info.GetReferenceMtas() {
			if r.GetFlagged() {
				flagged = append(flagged, fmt.Sprint(r.GetRefmtaId(), " ", r.GetPort()))
			}
		}
		if len(flagged) != 1 || flagged[0] != faulty.id+" 25" {
			t.Errorf("%s: flagged %q; want only %s port 25", when, flagged, faulty.id)
		}
	}
	if _, err := c.Dataset.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	check("ingested")
	if _, err := c.Dataset.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	check("rebuilt")

	var verdict int
	var failure, public string
	var evidence []byte
	if err := c.Store.Pool.QueryRow(ctx, "SELECT verdict, failure, public_evidence, evidence FROM results WHERE port = 587 AND round_id = ''").
		Scan(&verdict, &failure, &public, &evidence); err != nil {
		t.Fatal(err)
	}
	var sent op25bv1.ProbeResult
	proto.Unmarshal(evidence, &sent)
	if verdict != int(op25bv1.Verdict_VERDICT_INCONCLUSIVE) || failure != ingest.FailureRefMTABusy || public != "" ||
		sent.GetVerdict() != op25bv1.Verdict_VERDICT_INTERCEPTED {
		t.Errorf("signed refusal stored as verdict %d %q, public evidence %q, evidence %v; want INCONCLUSIVE refmta_busy, none, the agent's INTERCEPTED",
			verdict, failure, public, sent.GetVerdict())
	}
}
