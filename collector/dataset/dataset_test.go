package dataset_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/shares"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestEveryClass(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	resp, err := d.ListASNs(context.Background(), &pb.ListASNsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range resp.GetAsns() {
		got[fmt.Sprintf("AS%d %s", a.GetAsn(), dataset.FamilyName(a.GetFamily()))] = dataset.ClassName(a.GetPolicyClass())
		if w := a.GetWindow(); w.GetEnd().AsTime().Sub(w.GetStart().AsTime()) != 30*dataset.Day {
			t.Errorf("AS%d window %s; want the default 30 days", a.GetAsn(), dataset.FormatWindow(w))
		}
	}
	seen := map[string]bool{}
	for _, a := range datasettest.ASNs {
		for fam, class := range a.Class {
			k := fmt.Sprintf("AS%d %s", a.ASN, fam)
			if got[k] != class {
				t.Errorf("%s class %q; want %q", k, got[k], class)
			}
			seen[class] = true
		}
	}
	if len(got) != 8 {
		t.Errorf("%d ASN and family rows; want 8: %v", len(got), got)
	}
	for _, c := range dataset.ClassNames() {
		if !seen[c] {
			t.Errorf("class %s is not produced by the seeded world", c)
		}
	}
}

func portOf(a *pb.ASNSummary, port uint32) *pb.PortStats {
	for _, p := range a.GetPorts() {
		if p.GetPort() == port {
			return p
		}
	}
	return nil
}

func share(p *pb.PortStats, v pb.Verdict) *pb.Share {
	for _, s := range p.GetShares() {
		if s.GetVerdict() == v {
			return s
		}
	}
	return &pb.Share{}
}

func TestSharesAndIntervals(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	resp, err := d.GetASN(context.Background(), &pb.GetASNRequest{Asn: 64504, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetSummaries()) != 1 {
		t.Fatalf("%d summaries; want 1", len(resp.GetSummaries()))
	}
	a := resp.GetSummaries()[0]
	p25 := portOf(a, 25)
	if p25.GetAgents() != 4 || p25.GetPrefixes() != 4 || p25.GetResults() != 4*7*2 {
		t.Errorf("port 25: agents %d prefixes %d results %d; want 4, 4, 56", p25.GetAgents(), p25.GetPrefixes(), p25.GetResults())
	}
	s := share(p25, pb.Verdict_VERDICT_OPEN)
	low, high := shares.Wilson(2, 4)
	if s.GetCount() != 2 || s.GetShare() != 0.5 || s.GetWilsonLow() != low || s.GetWilsonHigh() != high {
		t.Errorf("port 25 OPEN share %+v; want 2 of 4 with [%v, %v]", s, low, high)
	}
	if len(p25.GetShares()) != 6 {
		t.Errorf("%d shares; want one per conclusive verdict (6)", len(p25.GetShares()))
	}
}

func TestProbeFarmWeighsOnePrefix(t *testing.T) {
	ctx := context.Background()
	blocked := func(d *dataset.Dataset) (blockedShare float64, prefixes, agents uint64) {
		resp, err := d.GetASN(ctx, &pb.GetASNRequest{Asn: 64501, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
		if err != nil {
			t.Fatal(err)
		}
		p := portOf(resp.GetSummaries()[0], 25)
		return share(p, pb.Verdict_VERDICT_BLOCKED_RESET).GetShare(), p.GetPrefixes(), p.GetAgents()
	}
	_, before := datasettest.Open(t, datasettest.NewWorld())
	b, bp, ba := blocked(before)
	w := datasettest.NewWorld()
	w.Farm(64501, 500, 1) // 500 agents in one /24, all OPEN
	_, after := datasettest.Open(t, w)
	a, ap, aa := blocked(after)
	if aa != ba+500 || ap != bp+1 {
		t.Errorf("with the farm: %d agents in %d prefixes; want %d in %d", aa, ap, ba+500, bp+1)
	}
	if moved, weight := math.Abs(b-a), 1/float64(ap); moved > weight+1e-12 {
		t.Errorf("500 agents in one /24 moved the blocked share from %.3f to %.3f (%.3f); one prefix weighs %.3f", b, a, moved, weight)
	}
	resp, _ := after.ListASNs(ctx, &pb.ListASNsRequest{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	for _, s := range resp.GetAsns() {
		if s.GetAsn() == 64501 && s.GetPolicyClass() != pb.PolicyClass_POLICY_CLASS_OP25B {
			t.Errorf("the farm turned AS64501 into %s", s.GetPolicyClass())
		}
	}
}

// snapshot renders every rollup table in a canonical order.
func snapshot(t *testing.T, s *store.Store) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"agg_agent_day", "agg_evidence", "agg_refmta_day", "agg_port", "agg_class", "policy_changes", "agg_dirty", "agg_agent_window", "agg_delta"} {
		var rows *string
		if err := s.Pool.QueryRow(context.Background(),
			"SELECT string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text) FROM "+table+" t").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "== %s\n", table)
		if rows != nil {
			b.WriteString(*rows + "\n")
		}
	}
	return b.String()
}

// rebuildMatches rebuilds the rollups with d and reports, as what, where
// the state s held before (what incremental refreshes reached) differs
// from the rebuilt one.
func rebuildMatches(t *testing.T, s *store.Store, d *dataset.Dataset, what string) {
	t.Helper()
	incremental := snapshot(t, s)
	if _, err := d.Rebuild(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if rebuilt := snapshot(t, s); rebuilt != incremental {
		t.Errorf("%s: %s", what, firstDiff(incremental, rebuilt))
	}
}

// firstDiff shows where two snapshots first differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("at line %d:\nfirst:  %s\nsecond: %s", i, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines vs %d", len(la), len(lb))
}

func TestRebuildEqualsIncremental(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	now := datasettest.Now.Add(-2 * dataset.Day)
	d, err := dataset.New(s.Pool, dataset.Config{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	w := datasettest.NewWorld()
	w.Farm(64504, 20, 3)
	rs := w.Results()
	// Arrive in shuffled batches (late results for earlier days included),
	// with a refresh of the daily points after each, of the windows after
	// every third, and a day rollover half way; then one result older than
	// every window and one of the next day (an agent's clock ahead), which
	// no window ending today holds until the day comes.
	var hs []store.ASHolder
	for _, a := range datasettest.ASNs {
		hs = append(hs, store.ASHolder{ASN: a.ASN, Name: a.Name, Country: a.Country})
	}
	if err := s.UpsertASNames(ctx, hs); err != nil {
		t.Fatal(err)
	}
	for i, batch := 0, 0; i < len(rs); batch++ {
		n := 137 + batch*61
		var part []store.Result
		for j := i; j < min(i+n, len(rs)); j++ {
			part = append(part, rs[(j*7919)%len(rs)])
		}
		i += n
		if _, err := s.InsertResults(ctx, part); err != nil {
			t.Fatal(err)
		}
		if _, err := s.InsertResults(ctx, part[:len(part)/3]); err != nil { // a replayed batch
			t.Fatal(err)
		}
		if i > len(rs)/2 {
			now = datasettest.Now
		}
		if _, err := d.RefreshDays(ctx); err != nil {
			t.Fatal(err)
		}
		if batch%3 == 2 {
			if _, err := d.RefreshWindows(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	var outliers []store.Result
	for _, at := range []time.Time{datasettest.Now.Add(-100 * dataset.Day), datasettest.Now.Add(dataset.Day)} {
		r := rs[len(rs)/2]
		r.MeasuredAt = at
		r.ID = uuidv7.New(r.MeasuredAt)
		outliers = append(outliers, r)
	}
	if _, err := s.InsertResults(ctx, outliers); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, outliers...)
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var stored int64
	s.Pool.QueryRow(ctx, "SELECT count(*) FROM results").Scan(&stored)
	if stored != int64(len(rs)) {
		t.Fatalf("%d results stored; want %d (the shuffle must cover them all)", stored, len(rs))
	}
	incremental := snapshot(t, s)
	st, err := d.Rebuild(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Results != int64(len(rs)) {
		t.Errorf("rebuild counted %d results; want %d", st.Results, len(rs))
	}
	rebuilt := snapshot(t, s)
	if incremental != rebuilt {
		t.Fatalf("rebuild differs from the incremental state: %s", firstDiff(incremental, rebuilt))
	}
	if !strings.Contains(rebuilt, `"window_days": 30`) || !strings.Contains(rebuilt, `"to_class": 1`) {
		t.Errorf("snapshot lacks the 30-day window or the policy change:\n%.2000s", rebuilt)
	}
}

func TestPolicyChange(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	resp, err := d.ListPolicyChanges(context.Background(), &pb.ListPolicyChangesRequest{Country: "jp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetChanges()) != 1 {
		t.Fatalf("changes %v; want exactly AS64506's", resp.GetChanges())
	}
	c := resp.GetChanges()[0]
	if c.GetAsn() != 64506 || c.GetFamily() != pb.AddressFamily_ADDRESS_FAMILY_IPV4 || c.GetFromClass() != pb.PolicyClass_POLICY_CLASS_OPEN ||
		c.GetToClass() != pb.PolicyClass_POLICY_CLASS_OP25B || !c.GetChangedAt().AsTime().Equal(datasettest.ChangeDay) || c.GetCountry() != "JP" {
		t.Errorf("change %v; want AS64506 IPv4 OPEN -> OP25B on %s in JP", c, datasettest.ChangeDay.Format(time.DateOnly))
	}
	a, err := d.GetASN(context.Background(), &pb.GetASNRequest{Asn: 64506})
	if err != nil {
		t.Fatal(err)
	}
	var classes []string
	for _, p := range a.GetTimeline() {
		classes = append(classes, dataset.ClassName(p.GetPolicyClass()))
	}
	if got, want := strings.Join(classes, " "), "OPEN OPEN OPEN OP25B OP25B OP25B OP25B"; got != want {
		t.Errorf("AS64506 timeline %s; want %s", got, want)
	}
	if len(a.GetChanges()) != 1 {
		t.Errorf("AS64506 changes %v; want 1", a.GetChanges())
	}
}

func TestPeers(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	ctx := context.Background()
	resp, err := d.GetPeers(ctx, &pb.GetPeersRequest{Asn: 64502})
	if err != nil {
		t.Fatal(err)
	}
	// JP over IPv4: 64501 and 64506 block port 25 on every prefix, 64502 on none.
	if resp.GetRank() != 3 || resp.GetPeerCount() != 3 || len(resp.GetPeers()) != 3 || resp.GetPeers()[2].GetAsn() != 64502 {
		t.Errorf("AS64502 rank %d of %d in a ranking of %d; want 3 of 3, listed third", resp.GetRank(), resp.GetPeerCount(), len(resp.GetPeers()))
	}
	kinds := func(r *pb.GetPeersResponse) string {
		var k []string
		for _, g := range r.GetGaps() {
			k = append(k, dataset.FamilyName(g.GetFamily())+":"+g.GetKind())
		}
		return strings.Join(k, " ")
	}
	if got := kinds(resp); got != "ipv4:intercepted" {
		t.Errorf("AS64502 gaps %q; want ipv4:intercepted", got)
	}
	for asn, want := range map[uint32]string{64501: "ipv6:ipv6_open_ipv4_blocked", 64503: "ipv4:submission_blocked", 64500: ""} {
		r, err := d.GetPeers(ctx, &pb.GetPeersRequest{Asn: asn})
		if err != nil {
			t.Fatal(err)
		}
		if got := kinds(r); got != want {
			t.Errorf("AS%d gaps %q; want %q", asn, got, want)
		}
	}
	if _, err := d.GetPeers(ctx, &pb.GetPeersRequest{Asn: 65000}); !errors.Is(err, dataset.ErrNotFound) {
		t.Errorf("peers of an unknown ASN: %v; want ErrNotFound", err)
	}
}

func TestCountries(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	resp, err := d.ListCountries(context.Background(), &pb.ListCountriesRequest{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range resp.GetCountries() {
		got[c.GetCountry()] = fmt.Sprintf("asns=%d agents=%d op25b=%.3f %v", c.GetAsns(), c.GetAgents(), c.GetOp25BShare(), c.GetClasses())
	}
	want := map[string]string{
		"JP": "asns=3 agents=11 op25b=0.667 map[INTERCEPT:1 OP25B:2]",
		"DE": "asns=2 agents=7 op25b=0.500 map[ALL_SMTP_BLOCKED:1 MIXED:1]",
		"US": "asns=2 agents=5 op25b=0.000 map[INSUFFICIENT_DATA:1 OPEN:1]",
	}
	for cc, w := range want {
		if got[cc] != w {
			t.Errorf("%s: %s; want %s", cc, got[cc], w)
		}
	}
}

func TestGetASN(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	ctx := context.Background()
	resp, err := d.GetASN(ctx, &pb.GetASNRequest{Asn: 64502})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvidence()) != 1 || resp.GetEvidence()[0] != datasettest.Banner {
		t.Errorf("evidence %q; want [%q]", resp.GetEvidence(), datasettest.Banner)
	}
	if it := resp.GetEvidenceItems(); len(it) != 1 || it[0].GetResults() != 3*7*2 || it[0].GetPort() != 25 {
		t.Errorf("evidence items %v; want one on port 25 from 42 results", it)
	}
	if n := len(resp.GetTimeline()); n != 7 {
		t.Errorf("%d timeline points; want 7 (one per seeded day)", n)
	}
	for _, p := range resp.GetTimeline() {
		if p.GetAgents() != 3 || len(p.GetPorts()) != 3 {
			t.Errorf("timeline point %s: %d agents, %d ports; want 3 and 3", p.GetDay().AsTime().Format(time.DateOnly), p.GetAgents(), len(p.GetPorts()))
		}
	}
	if _, err := d.GetASN(ctx, &pb.GetASNRequest{Asn: 65000}); !errors.Is(err, dataset.ErrNotFound) {
		t.Errorf("unknown ASN: %v; want ErrNotFound", err)
	}
	if _, err := d.GetASN(ctx, &pb.GetASNRequest{}); !errors.Is(err, dataset.ErrInvalid) {
		t.Errorf("no ASN: %v; want ErrInvalid", err)
	}
}

func TestCustomWindowAndPaging(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	ctx := context.Background()
	first3 := &pb.TimeRange{Start: timestamppb.New(datasettest.ChangeDay.Add(-3 * dataset.Day)), End: timestamppb.New(datasettest.ChangeDay)}
	resp, err := d.ListASNs(ctx, &pb.ListASNsRequest{Window: first3, Country: "JP", Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range resp.GetAsns() {
		if a.GetAsn() == 64506 && a.GetPolicyClass() != pb.PolicyClass_POLICY_CLASS_OPEN {
			t.Errorf("AS64506 before its change: %s; want OPEN", a.GetPolicyClass())
		}
	}
	if len(resp.GetAsns()) != 3 {
		t.Errorf("%d JP ASNs in the custom window; want 3", len(resp.GetAsns()))
	}
	// Page through every ASN two at a time, in both the precomputed and a
	// custom window: the same rows in the same order as one page.
	for _, w := range []*pb.TimeRange{nil, {Start: timestamppb.New(datasettest.Now.Add(-20 * dataset.Day)), End: timestamppb.New(datasettest.Now)}} {
		all, err := d.ListASNs(ctx, &pb.ListASNsRequest{Window: w})
		if err != nil {
			t.Fatal(err)
		}
		var paged []string
		tok := ""
		for range 10 {
			p, err := d.ListASNs(ctx, &pb.ListASNsRequest{Window: w, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range p.GetAsns() {
				paged = append(paged, fmt.Sprint(a.GetAsn(), a.GetFamily(), a.GetPolicyClass()))
			}
			if tok = p.GetNextPageToken(); tok == "" {
				break
			}
		}
		var one []string
		for _, a := range all.GetAsns() {
			one = append(one, fmt.Sprint(a.GetAsn(), a.GetFamily(), a.GetPolicyClass()))
		}
		if strings.Join(paged, ",") != strings.Join(one, ",") || len(one) != 8 {
			t.Errorf("window %s: paged %v; one page %v", dataset.FormatWindow(w), paged, one)
		}
	}
	if _, err := d.ListASNs(ctx, &pb.ListASNsRequest{PageToken: "garbage"}); !errors.Is(err, dataset.ErrInvalid) {
		t.Errorf("bad page token: %v; want ErrInvalid", err)
	}
	long := &pb.TimeRange{Start: timestamppb.New(datasettest.Now.Add(-400 * dataset.Day)), End: timestamppb.New(datasettest.Now)}
	if _, err := d.ListASNs(ctx, &pb.ListASNsRequest{Window: long}); !errors.Is(err, dataset.ErrInvalid) {
		t.Errorf("400-day window: %v; want ErrInvalid", err)
	}
}

func TestExport(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	ctx := context.Background()
	week := &pb.TimeRange{Start: timestamppb.New(datasettest.Now.Add(-7 * dataset.Day)), End: timestamppb.New(datasettest.Now.Add(dataset.Day))}
	var got []*pb.PublicResult
	batches := 0
	err := d.ExportResults(ctx, &pb.ExportResultsRequest{Range: week}, func(b []*pb.PublicResult) error {
		batches++
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want int
	s.Pool.QueryRow(ctx, "SELECT count(*) FROM results").Scan(&want)
	if len(got) != want || batches < 2 {
		t.Fatalf("exported %d results in %d batches; want %d in several", len(got), batches, want)
	}
	rows, _ := s.Pool.Query(ctx, "SELECT DISTINCT host(egress) FROM results")
	egress, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(egress) == 0 {
		t.Fatalf("the volunteers' addresses to look for in the export: %v, %v", egress, err)
	}
	for i, r := range got {
		if i > 0 && r.GetResultId() <= got[i-1].GetResultId() {
			t.Fatalf("export out of order at %d", i)
		}
		text := fmt.Sprint(r)
		for _, e := range egress {
			if strings.Contains(text, e) {
				t.Fatalf("export carries a full address %s: %v", e, r)
			}
		}
		if !strings.HasSuffix(r.GetPrefix(), "/24") && !strings.HasSuffix(r.GetPrefix(), "/48") {
			t.Fatalf("export prefix %q is not a /24 or /48", r.GetPrefix())
		}
	}
	n := 0
	err = d.ExportResults(ctx, &pb.ExportResultsRequest{Range: week, Asn: 64502, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4}, func(b []*pb.PublicResult) error {
		n += len(b)
		return nil
	})
	if err != nil || n != 3*7*2*3 {
		t.Errorf("export of AS64502: %d results, %v; want 126", n, err)
	}
	stop := errors.New("client went away")
	if err := d.ExportResults(ctx, &pb.ExportResultsRequest{Range: week}, func([]*pb.PublicResult) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("emit failing: %v; want its error back", err)
	}
	long := &pb.TimeRange{Start: timestamppb.New(datasettest.Now.Add(-40 * dataset.Day)), End: timestamppb.New(datasettest.Now)}
	if err := d.ExportResults(ctx, &pb.ExportResultsRequest{Range: long}, nil); !errors.Is(err, dataset.ErrInvalid) {
		t.Errorf("40-day export: %v; want ErrInvalid", err)
	}
}

// ASNs above 2^31 (RFC 6996 private 32-bit ones, many real ones) go
// through every query that filters by ASN.
func TestLargeASN(t *testing.T) {
	const big = 4200000001
	w := datasettest.NewWorld()
	w.Farm(big, 3, 2)
	_, d := datasettest.Open(t, w)
	ctx := context.Background()
	a, err := d.GetASN(ctx, &pb.GetASNRequest{Asn: big})
	if err != nil || len(a.GetSummaries()) != 1 || a.GetSummaries()[0].GetAsn() != big {
		t.Fatalf("GetASN(AS%d) = %v, %v", uint32(big), a.GetSummaries(), err)
	}
	if _, err := d.ListPolicyChanges(ctx, &pb.ListPolicyChangesRequest{Asn: big}); err != nil {
		t.Errorf("ListPolicyChanges(AS%d): %v", uint32(big), err)
	}
	week := &pb.TimeRange{Start: timestamppb.New(datasettest.Now.Add(-7 * dataset.Day)), End: timestamppb.New(datasettest.Now.Add(dataset.Day))}
	n := 0
	err = d.ExportResults(ctx, &pb.ExportResultsRequest{Range: week, Asn: big}, func(b []*pb.PublicResult) error {
		n += len(b)
		return nil
	})
	if err != nil || n != 3*7*3 {
		t.Errorf("export of AS%d: %d results, %v; want 63", uint32(big), n, err)
	}
}
