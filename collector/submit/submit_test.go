package submit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/collector/submit"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// now is the tests' clock: midday, so that a round stays in one UTC day.
var now = time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)

const refmtaID = "refmta-a"

// asns attributes 192.0.2.0/24 to AS64500 and 198.51.100.0/24 to AS64501.
type asns struct{}

func (asns) Attribute(a netip.Addr, _ time.Time) ingest.Attribution {
	switch {
	case netip.MustParsePrefix("192.0.2.0/24").Contains(a):
		return ingest.Attribution{ASN: 64500, Snapshot: 1}
	case netip.MustParsePrefix("198.51.100.0/24").Contains(a):
		return ingest.Attribution{ASN: 64501, Snapshot: 1}
	}
	return ingest.Attribution{Snapshot: 1}
}

type world struct {
	t     *testing.T
	key   ed25519.PrivateKey
	st    *store.Store
	ds    *dataset.Dataset
	svc   *submit.Service
	clock time.Time
}

func newWorld(t *testing.T, o submit.Options) *world {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, key: key, st: storetest.New(t), clock: now}
	sch := &pb.Schedule{ReferenceMtas: []*pb.ReferenceMTA{{Id: refmtaID, PublicKey: pub, Addresses: []string{"203.0.113.25"},
		Ports: []uint32{25, 587, 465}, ControlPort: 443}}}
	if o.PerAddress == 0 {
		o.PerAddress, o.AddressBurst, o.PerPrefix, o.PrefixBurst = 1000, 1000, 1000, 1000
	}
	o.Now = func() time.Time { return w.clock }
	w.svc = submit.New(w.st, asns{}, func() *pb.Schedule { return sch }, o)
	if err := w.st.UpsertASNames(context.Background(), []store.ASHolder{{ASN: 64500, Name: "Example Net", Country: "JP"}}); err != nil {
		t.Fatal(err)
	}
	if w.ds, err = dataset.New(w.st.Pool, dataset.Config{}, func() time.Time { return w.clock }); err != nil {
		t.Fatal(err)
	}
	return w
}

// round is a round measured from src at the world's clock: one result per
// port, with the given verdicts, each with a fresh nonce, the control
// port's signed statement and, for OPEN, the probe's.
func (w *world) round(src string, verdicts map[uint32]pb.Verdict) *pb.SubmitRoundRequest {
	at := w.clock.Add(-time.Minute)
	rep := &pb.ProbeReport{RoundId: uuidv7.New(at), AgentVersion: "test", StartedAt: timestamppb.New(at)}
	source := netip.MustParseAddr(src)
	control := proof.Sign(w.key, proof.Statement{Nonce: nonce(), Source: source, Port: 443, Time: at, Ports: []uint16{25, 587, 465}})
	for _, port := range []uint32{25, 587, 465} {
		v, ok := verdicts[port]
		if !ok {
			continue
		}
		n := nonce()
		r := &pb.ProbeResult{ResultId: uuidv7.New(at), RefmtaId: refmtaID, Port: port, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4,
			Verdict: v, StartedAt: timestamppb.New(at), Nonce: n, AgentVersion: "test", TargetAddress: "203.0.113.25",
			RoundId: rep.RoundId, Control: &pb.ControlObservation{Reached: true, Port: 443, Statement: control}}
		if v == pb.Verdict_VERDICT_OPEN {
			r.Evidence = &pb.Evidence{ProofValid: true, Statement: proof.Sign(w.key, proof.Statement{Nonce: n, Source: source, Port: uint16(port), Time: at})}
		} else {
			r.Failure = "timeout"
		}
		rep.Results = append(rep.Results, r)
	}
	return &pb.SubmitRoundRequest{Report: rep}
}

func nonce() []byte {
	b := make([]byte, proof.NonceLen)
	rand.Read(b)
	return b
}

var op25b = map[uint32]pb.Verdict{25: pb.Verdict_VERDICT_BLOCKED_TIMEOUT, 587: pb.Verdict_VERDICT_OPEN, 465: pb.Verdict_VERDICT_OPEN}

func (w *world) count(sql string) int {
	var n int
	if err := w.st.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// TestSubmitStoresOneOffResults: a round is stored like an agent's,
// attributed from the control port's signed statement (not from the
// address it was sent from), with no agent, and shown by its id with the
// prefix and ASN only.
func TestSubmitStoresOneOffResults(t *testing.T) {
	w := newWorld(t, submit.Options{})
	ctx := context.Background()
	id, err := w.svc.Submit(ctx, netip.MustParseAddr("203.0.113.200"), w.round("192.0.2.7", op25b))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if n := w.count(`SELECT count(*) FROM results WHERE agent_id = '' AND submission_id = '` + id + `' AND egress = '192.0.2.7'
		AND egress_source = 2 AND asn = 64500`); n != 3 {
		t.Errorf("%d results stored as one-off, attributed to 192.0.2.7 and AS64500 from the control statement; want 3", n)
	}
	if n := w.count(`SELECT count(*) FROM submissions WHERE client = '203.0.113.200' AND results = 3`); n != 1 {
		t.Errorf("%d submissions rows with the client's address; want 1", n)
	}
	sub, err := w.ds.GetSubmission(ctx, id)
	if err != nil {
		t.Fatalf("GetSubmission: %v", err)
	}
	if len(sub.Networks) != 1 || sub.Networks[0].Prefix != "192.0.2.0/24" || sub.Networks[0].Asn != 64500 ||
		sub.Networks[0].AsName != "Example Net" || sub.Networks[0].Country != "JP" {
		t.Errorf("networks = %v; want 192.0.2.0/24, AS64500 Example Net, JP", sub.Networks)
	}
	if len(sub.Results) != 3 || sub.AgentVersion != "test" {
		t.Fatalf("submission = %v; want 3 results of agent version test", sub)
	}
	for _, r := range sub.Results {
		if !r.OneOff || r.SubmissionId != id || r.AgentId != "" || r.Prefix != "192.0.2.0/24" {
			t.Errorf("result = %v; want one-off, of submission %s, no agent, prefix 192.0.2.0/24", r, id)
		}
	}
	if b, _ := proto.Marshal(sub); strings.Contains(string(b), "192.0.2.7") || strings.Contains(string(b), "203.0.113.200") {
		t.Errorf("the public submission carries a full address: %v", sub)
	}
	var exported []*pb.PublicResult
	err = w.ds.ExportResults(ctx, &pb.ExportResultsRequest{Range: &pb.TimeRange{Start: timestamppb.New(now.Add(-time.Hour)), End: timestamppb.New(now)}},
		func(rs []*pb.PublicResult) error { exported = append(exported, rs...); return nil })
	if err != nil || len(exported) != 3 || !exported[0].OneOff || exported[0].SubmissionId != id {
		t.Errorf("export = %v, %v; want the 3 results marked one-off with their submission", exported, err)
	}
	if _, err := w.ds.GetSubmission(ctx, uuidv7.New(now)); !errors.Is(err, dataset.ErrNotFound) {
		t.Errorf("an unknown submission: %v; want ErrNotFound", err)
	}
	if _, err := w.ds.GetSubmission(ctx, "nope"); !errors.Is(err, dataset.ErrInvalid) {
		t.Errorf("a malformed id: %v; want ErrInvalid", err)
	}
}

// TestSubmitRefusesReplays: a round is taken once, and so is each nonce: a
// copy under new ids is refused too, and nothing of either is stored.
func TestSubmitRefusesReplays(t *testing.T) {
	counts := map[string]int{}
	w := newWorld(t, submit.Options{Count: func(o string) { counts[o]++ }})
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.7")
	req := w.round("192.0.2.7", op25b)
	first, err := w.svc.Submit(ctx, client, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Submit(ctx, client, req)
	var replay *store.ReplayError
	if !errors.As(err, &replay) || replay.Earlier != first || !strings.Contains(err.Error(), first) {
		t.Errorf("the same round again: %v; want a replay naming %s", err, first)
	}
	renamed := proto.Clone(req).(*pb.SubmitRoundRequest)
	renamed.Report.RoundId = uuidv7.New(now)
	for _, r := range renamed.Report.Results {
		r.ResultId, r.RoundId = uuidv7.New(now.Add(-time.Minute)), renamed.Report.RoundId
	}
	if _, err := w.svc.Submit(ctx, client, renamed); !errors.Is(err, store.ErrReplayed) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("the round under new ids, with its nonces: %v; want a replay of a nonce", err)
	}
	sameIDs := w.round("192.0.2.7", op25b)
	sameIDs.Report.Results[0].ResultId = req.Report.Results[0].ResultId
	if _, err := w.svc.Submit(ctx, client, sameIDs); !errors.Is(err, store.ErrReplayed) {
		t.Errorf("a new round reusing a stored result id: %v; want a replay", err)
	}
	if n := w.count("SELECT count(*) FROM results"); n != 3 {
		t.Errorf("%d results stored; want the first round's 3 only", n)
	}
	if n := w.count("SELECT count(*) FROM submissions"); n != 1 {
		t.Errorf("%d submissions stored; want 1", n)
	}
	if counts["stored"] != 1 || counts["replayed"] != 3 || len(counts) != 2 {
		t.Errorf("outcomes counted %v; want 1 stored, 3 replayed", counts)
	}
}

// TestSubmitRefusesBadRounds: what an anonymous sender cannot back with
// our reference MTAs' signatures, or that is not a round of a check, is
// refused whole, with a reason.
func TestSubmitRefusesBadRounds(t *testing.T) {
	w := newWorld(t, submit.Options{})
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		change func(r *pb.SubmitRoundRequest)
		want   string
	}{
		{"no results", func(r *pb.SubmitRoundRequest) { r.Report.Results = nil }, "no results"},
		{"an agent's", func(r *pb.SubmitRoundRequest) { r.Report.Results[1].AgentId = "agent-1" }, "op25b-agent run"},
		{"another reference MTA", func(r *pb.SubmitRoundRequest) { r.Report.Results[0].RefmtaId = "refmta-elsewhere" }, "not in this collector's schedule"},
		{"two rounds", func(r *pb.SubmitRoundRequest) { r.Report.Results[2].RoundId = uuidv7.New(now) }, "not of the report's"},
		{"no round id", func(r *pb.SubmitRoundRequest) { r.Report.RoundId = "" }, "not a UUIDv7"},
		{"too many", func(r *pb.SubmitRoundRequest) {
			for len(r.Report.Results) <= submit.MaxResults {
				r.Report.Results = append(r.Report.Results, proto.Clone(r.Report.Results[0]).(*pb.ProbeResult))
			}
		}, "at most 64"},
		{"OPEN without proof", func(r *pb.SubmitRoundRequest) { r.Report.Results[1].Evidence.Statement = "" }, "OPEN without"},
		{"OPEN proved for another nonce", func(r *pb.SubmitRoundRequest) { r.Report.Results[1].Nonce = nonce() }, "OPEN without"},
		{"OPEN signed by another key", func(r *pb.SubmitRoundRequest) {
			x := r.Report.Results[1]
			x.Evidence.Statement = proof.Sign(otherKey, proof.Statement{Nonce: x.Nonce, Source: netip.MustParseAddr("192.0.2.7"), Port: 587, Time: now})
		}, "OPEN without"},
		{"blocked, placed by nothing", func(r *pb.SubmitRoundRequest) { r.Report.Results[0].Control.Statement = "" }, "says where it was measured from"},
		{"blocked, placed by an old statement", func(r *pb.SubmitRoundRequest) {
			r.Report.Results[0].Control.Statement = proof.Sign(w.key, proof.Statement{Nonce: nonce(), Source: netip.MustParseAddr("192.0.2.7"), Port: 443, Time: now.Add(-time.Hour)})
		}, "says where it was measured from"},
		{"measured two hours ago", func(r *pb.SubmitRoundRequest) {
			for _, x := range r.Report.Results {
				x.ResultId = uuidv7.New(now.Add(-2 * time.Hour))
				x.StartedAt = timestamppb.New(now.Add(-2 * time.Hour))
			}
		}, "older than the 1h0m0s accepted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := w.round("192.0.2.7", op25b)
			c.change(req)
			_, err := w.svc.Submit(context.Background(), netip.MustParseAddr("192.0.2.7"), req)
			if !errors.Is(err, submit.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("submit: %v; want an invalid submission saying %q", err, c.want)
			}
		})
	}
	if n := w.count("SELECT count(*) FROM results"); n != 0 {
		t.Errorf("%d results stored from refused submissions; want 0", n)
	}
	// INCONCLUSIVE asserts nothing about a network: it needs no statement.
	req := w.round("192.0.2.7", map[uint32]pb.Verdict{25: pb.Verdict_VERDICT_INCONCLUSIVE})
	req.Report.Results[0].Control = nil
	if _, err := w.svc.Submit(context.Background(), netip.MustParseAddr("192.0.2.7"), req); err != nil {
		t.Errorf("an INCONCLUSIVE round without statements: %v; want it stored", err)
	}
}

// TestSubmitRateLimits: an address, and a /24, get a few submissions an
// hour; the next gets a RateError that says when to come back.
func TestSubmitRateLimits(t *testing.T) {
	w := newWorld(t, submit.Options{PerAddress: 6, AddressBurst: 2, PerPrefix: 30, PrefixBurst: 3})
	ctx := context.Background()
	submitFrom := func(client string) error {
		_, err := w.svc.Submit(ctx, netip.MustParseAddr(client), w.round("192.0.2.7", op25b))
		return err
	}
	for i := range 2 {
		if err := submitFrom("192.0.2.7"); err != nil {
			t.Fatalf("submission %d: %v", i+1, err)
		}
	}
	var rate *submit.RateError
	if err := submitFrom("192.0.2.7"); !errors.As(err, &rate) || rate.RetryAfter != 10*time.Minute || !strings.Contains(rate.What, "your address") {
		t.Errorf("a third submission from one address: %v; want a RateError for the address, retry after 10 min", err)
	}
	if err := submitFrom("192.0.2.8"); err != nil {
		t.Errorf("a neighbour's first submission: %v", err)
	}
	if err := submitFrom("192.0.2.9"); !errors.As(err, &rate) || !strings.Contains(rate.What, "192.0.2.0/24") {
		t.Errorf("a fourth submission from one /24: %v; want a RateError for the network", err)
	}
	w.clock = w.clock.Add(10 * time.Minute)
	if err := submitFrom("192.0.2.7"); err != nil {
		t.Errorf("after 10 minutes: %v; want a token back", err)
	}
}

// TestOneOffsCountOncePerPrefix: however often one-off rounds come from a
// /24, its one-off results are one agent there: ten BLOCKED runs do not
// outvote two enrolled agents that see port 25 OPEN, and a second /24's
// runs add one agent and one prefix.
func TestOneOffsCountOncePerPrefix(t *testing.T) {
	w := newWorld(t, submit.Options{})
	ctx := context.Background()
	var enrolled []store.Result
	for i, agent := range []string{"agent-a", "agent-b"} {
		at := now.Add(-time.Duration(i+2) * time.Minute)
		enrolled = append(enrolled, store.Result{ID: uuidv7.New(at), MeasuredAt: at, AgentID: agent, RefMTA: refmtaID, Port: 25, Family: 4,
			Verdict: 1, Egress: netip.MustParseAddr("192.0.2.1"), EgressSource: store.EgressControl, Prefix: netip.MustParsePrefix("192.0.2.0/24"), ASN: 64500})
	}
	if _, err := w.st.InsertResults(ctx, enrolled); err != nil {
		t.Fatal(err)
	}
	blocked := map[uint32]pb.Verdict{25: pb.Verdict_VERDICT_BLOCKED_TIMEOUT}
	for i := range 10 {
		if _, err := w.svc.Submit(ctx, netip.MustParseAddr("192.0.2.50"), w.round("192.0.2.50", blocked)); err != nil {
			t.Fatalf("one-off %d: %v", i, err)
		}
	}
	for range 3 {
		if _, err := w.svc.Submit(ctx, netip.MustParseAddr("192.0.2.60"), w.round("192.0.2.60", blocked)); err != nil {
			t.Fatal(err)
		}
	}
	port25 := func() *pb.PortStats {
		if _, err := w.ds.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		a, err := w.ds.GetASN(ctx, &pb.GetASNRequest{Asn: 64500, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range a.GetSummaries() {
			for _, p := range f.GetPorts() {
				if p.GetPort() == 25 {
					return p
				}
			}
		}
		t.Fatalf("no port 25 in %v", a)
		return nil
	}
	p := port25()
	if p.GetAgents() != 3 || p.GetPrefixes() != 1 || p.GetResults() != 15 {
		t.Errorf("port 25: %d agents, %d prefixes, %d results; want 3 (two enrolled, the /24's one-offs), 1, 15", p.GetAgents(), p.GetPrefixes(), p.GetResults())
	}
	for _, s := range p.GetShares() {
		if s.GetVerdict() == pb.Verdict_VERDICT_OPEN && s.GetCount() != 1 {
			t.Errorf("the /24 counts %v OPEN; want 1: two enrolled agents outvote its one-off runs", s.GetCount())
		}
	}
	if _, err := w.svc.Submit(ctx, netip.MustParseAddr("192.0.2.7"), w.round("198.51.100.9", map[uint32]pb.Verdict{25: pb.Verdict_VERDICT_BLOCKED_TIMEOUT})); err != nil {
		t.Fatal(err)
	}
	if n := w.count(`SELECT count(DISTINCT agent_id) FROM agg_agent_day WHERE agent_id LIKE 'one-off %'`); n != 2 {
		t.Errorf("%d one-off agents in the tallies; want 2, one per prefix", n)
	}
}
