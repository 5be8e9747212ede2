package dataset_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// poolASN is the ISP of datasettest's Pools in these tests.
const poolASN = 64520

func poolWorld() *datasettest.World {
	w := datasettest.NewWorld()
	w.Pools(poolASN)
	return w
}

func prefixPort(p *pb.PrefixSummary, port uint32) *pb.PrefixPort {
	for _, pp := range p.GetPorts() {
		if pp.GetPort() == port {
			return pp
		}
	}
	return nil
}

func allPrefixes(t *testing.T, d *dataset.Dataset, req *pb.GetPrefixesRequest) []*pb.PrefixSummary {
	t.Helper()
	var out []*pb.PrefixSummary
	for {
		resp, err := d.GetPrefixes(context.Background(), req)
		if err != nil {
			t.Fatalf("GetPrefixes(%v): %v", req, err)
		}
		out = append(out, resp.GetPrefixes()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// An ISP halfway through its rollout sees which of its prefixes still let
// port 25 out, and when each pool changed.
func TestPrefixesOfAPartialRollout(t *testing.T) {
	w := poolWorld()
	_, d := datasettest.Open(t, w)
	got := allPrefixes(t, d, &pb.GetPrefixesRequest{Asn: poolASN})
	var names []string
	for _, p := range got {
		names = append(names, p.GetPrefix())
	}
	// IPv4 first, each family in address order.
	want := []string{"100.64.1.0/24", "100.64.2.0/24", "100.64.3.0/24", "192.0.2.0/24", "198.51.100.0/24", "2001:db8:77::/48"}
	if !slices.Equal(names, want) {
		t.Fatalf("prefixes %v; want %v", names, want)
	}
	byPrefix := map[string]*pb.PrefixSummary{}
	for _, p := range got {
		byPrefix[p.GetPrefix()] = p
	}
	for _, pp := range datasettest.PoolPrefixes {
		p := byPrefix[pp.Prefix]
		v := ""
		if p25 := prefixPort(p, 25); p25.GetVerdict() != pb.Verdict_VERDICT_UNSPECIFIED {
			v = dataset.VerdictName(p25.GetVerdict())
		}
		if v != pp.Verdict25 {
			t.Errorf("%s port 25 verdict %q; want %q", pp.Prefix, v, pp.Verdict25)
		}
	}

	static := byPrefix["192.0.2.0/24"]
	if static.GetAgents() != 2 || static.GetResults() != 2*7*2*3 || len(static.GetDays()) != 7 {
		t.Errorf("static pool: %d agents, %d results, %d days; want 2, 84, 7", static.GetAgents(), static.GetResults(), len(static.GetDays()))
	}
	if p := prefixPort(static, 25); p.GetResults() != 28 || len(p.GetAgentVerdicts()) != 1 || p.GetAgentVerdicts()[0].GetAgents() != 2 {
		t.Errorf("static pool port 25: %v; want 28 results, both agents OPEN", p)
	}
	if v6 := byPrefix["2001:db8:77::/48"]; v6.GetFamily() != pb.AddressFamily_ADDRESS_FAMILY_IPV6 {
		t.Errorf("2001:db8:77::/48 family %v", v6.GetFamily())
	}

	// The switched pool: OPEN for three days, then BLOCKED_RESET from
	// the change on, and blocked over the week (8 results to 6).
	sw := byPrefix["100.64.1.0/24"]
	var strip []string
	for _, day := range sw.GetDays() {
		if len(day.GetPorts()) != 3 || day.GetPorts()[0].GetPort() != 25 || day.GetPorts()[0].GetAgents() != 1 {
			t.Errorf("switched pool on %v: ports %v; want 25, 587 and 465, one agent", day.GetDay().AsTime(), day.GetPorts())
		}
		v := dataset.VerdictName(day.GetPorts()[0].GetVerdict())
		if day.GetDay().AsTime().Equal(datasettest.ChangeDay) && v != "BLOCKED_RESET" {
			t.Errorf("switched pool on the change day: %s", v)
		}
		strip = append(strip, v)
	}
	if want := strings.Fields("OPEN OPEN OPEN BLOCKED_RESET BLOCKED_RESET BLOCKED_RESET BLOCKED_RESET"); !slices.Equal(strip, want) {
		t.Errorf("switched pool's port 25 by day %v; want %v", strip, want)
	}

	// A tie between agents goes to the lower verdict number, as in the
	// shares; both agents are counted.
	tie := prefixPort(byPrefix["100.64.2.0/24"], 25)
	if av := tie.GetAgentVerdicts(); len(av) != 2 || av[0].GetVerdict() != pb.Verdict_VERDICT_OPEN || av[1].GetVerdict() != pb.Verdict_VERDICT_BLOCKED_RESET ||
		av[0].GetAgents() != 1 || av[1].GetAgents() != 1 {
		t.Errorf("tied pool port 25 agents %v; want one OPEN, one BLOCKED_RESET", av)
	}

	// Inconclusive results make a prefix seen but give it no verdict and
	// no agent.
	dark := byPrefix["100.64.3.0/24"]
	if dark.GetAgents() != 0 || dark.GetResults() != 2*3 || len(dark.GetDays()) != 0 || len(dark.GetPorts()) != 3 ||
		!dark.GetFirstSeen().AsTime().Equal(datasettest.Now.Truncate(dataset.Day).Add(-dataset.Day)) ||
		!dark.GetLastSeen().AsTime().Equal(datasettest.Now.Truncate(dataset.Day)) {
		t.Errorf("inconclusive pool: %v; want no agent, 6 results in 3 ports, seen the last two days, no day with a verdict", dark)
	}

	// A window before the change: the switched pool is open.
	early := allPrefixes(t, d, &pb.GetPrefixesRequest{Asn: poolASN, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4,
		Window: &pb.TimeRange{Start: timestamppb.New(datasettest.ChangeDay.Add(-3 * dataset.Day)), End: timestamppb.New(datasettest.ChangeDay)}})
	for _, p := range early {
		if p.GetPrefix() == "100.64.1.0/24" && prefixPort(p, 25).GetVerdict() != pb.Verdict_VERDICT_OPEN {
			t.Errorf("switched pool before the change: %v; want OPEN", prefixPort(p, 25))
		}
		if p.GetPrefix() == "100.64.3.0/24" {
			t.Errorf("inconclusive pool listed before its agent's first result")
		}
	}
	if len(early) != 4 {
		t.Errorf("%d IPv4 prefixes before the change; want 4", len(early))
	}

	// Only prefixes: no volunteer's address in the answer.
	b, err := protojson.Marshal(&pb.GetPrefixesResponse{Prefixes: got})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range w.Addresses() {
		if strings.Contains(string(b), `"`+a) {
			t.Errorf("the answer holds the address %s", a)
		}
	}
}

// The prefixes' verdicts are the shares' unit: per ASN, family and
// window, the prefixes of each port-25 verdict are the share's counts.
func TestPrefixesAgreeWithShares(t *testing.T) {
	_, d := datasettest.Open(t, poolWorld())
	ctx := context.Background()
	for _, window := range []*pb.TimeRange{nil, dataset.Rolling(7, datasettest.Now),
		{Start: timestamppb.New(datasettest.ChangeDay.Add(-2 * dataset.Day)), End: timestamppb.New(datasettest.ChangeDay.Add(2 * dataset.Day))}} {
		for _, asn := range []uint32{64501, 64504, 64506, poolASN} {
			a, err := d.GetASN(ctx, &pb.GetASNRequest{Asn: asn, Window: window})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range a.GetSummaries() {
				want := map[pb.Verdict]float64{}
				for _, sh := range portOf(s, 25).GetShares() {
					if sh.GetCount() > 0 {
						want[sh.GetVerdict()] = sh.GetCount()
					}
				}
				got := map[pb.Verdict]float64{}
				for _, p := range allPrefixes(t, d, &pb.GetPrefixesRequest{Asn: asn, Family: s.GetFamily(), Window: window}) {
					if v := prefixPort(p, 25).GetVerdict(); v != pb.Verdict_VERDICT_UNSPECIFIED {
						got[v]++
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("AS%d %s in %s: prefixes per verdict %v; the shares count %v", asn, dataset.FamilyName(s.GetFamily()),
						dataset.FormatWindow(s.GetWindow()), got, want)
				}
			}
		}
	}
}

func TestPrefixesPaging(t *testing.T) {
	_, d := datasettest.Open(t, poolWorld())
	ctx := context.Background()
	whole := allPrefixes(t, d, &pb.GetPrefixesRequest{Asn: poolASN})
	var pages int
	req := &pb.GetPrefixesRequest{Asn: poolASN, PageSize: 4}
	var paged []string
	for {
		resp, err := d.GetPrefixes(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetPrefixes()) > 4 {
			t.Errorf("page of %d prefixes; want at most 4", len(resp.GetPrefixes()))
		}
		for _, p := range resp.GetPrefixes() {
			paged = append(paged, p.GetPrefix())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	var all []string
	for _, p := range whole {
		all = append(all, p.GetPrefix())
	}
	if pages != 2 || !slices.Equal(paged, all) {
		t.Errorf("pages of 4: %d pages of %v; want 2 of %v", pages, paged, all)
	}
	v6 := allPrefixes(t, d, &pb.GetPrefixesRequest{Asn: poolASN, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV6})
	if len(v6) != 1 || v6[0].GetPrefix() != "2001:db8:77::/48" {
		t.Errorf("IPv6 prefixes %v; want 2001:db8:77::/48", v6)
	}
	resp, err := d.GetPrefixes(ctx, &pb.GetPrefixesRequest{Asn: poolASN,
		Window: &pb.TimeRange{Start: timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), End: timestamppb.New(time.Date(2025, 1, 8, 0, 0, 0, 0, time.UTC))}})
	if err != nil || len(resp.GetPrefixes()) != 0 {
		t.Errorf("a window without results: %v, %v; want no prefix and no error", resp, err)
	}

	for _, tc := range []struct {
		req  *pb.GetPrefixesRequest
		want error
		msg  string
	}{
		{&pb.GetPrefixesRequest{}, dataset.ErrInvalid, "asn is required"},
		{&pb.GetPrefixesRequest{Asn: 65999}, dataset.ErrNotFound, "no measurements from AS65999"},
		{&pb.GetPrefixesRequest{Asn: poolASN, PageToken: "bm9wZQ"}, dataset.ErrInvalid, "page_token"},
		{&pb.GetPrefixesRequest{Asn: poolASN, PageSize: 5000}, dataset.ErrInvalid, "at most 3333 prefixes for a 30-day window"},
		{&pb.GetPrefixesRequest{Asn: poolASN, PageSize: 274, Window: dataset.Rolling(366, datasettest.Now)}, dataset.ErrInvalid, "at most 273"},
	} {
		_, err := d.GetPrefixes(ctx, tc.req)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("GetPrefixes(%v) = %v; want %v saying %q", tc.req, err, tc.want, tc.msg)
		}
	}
	if _, err := d.GetPrefixes(ctx, &pb.GetPrefixesRequest{Asn: poolASN, PageSize: 3333}); err != nil {
		t.Errorf("page_size 3333 over 30 days: %v", err)
	}
}
