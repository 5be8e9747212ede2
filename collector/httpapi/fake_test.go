package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// now is the fake clock of every test: a Sunday noon, UTC.
var now = time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)

const (
	v4 = pb.AddressFamily_ADDRESS_FAMILY_IPV4
	v6 = pb.AddressFamily_ADDRESS_FAMILY_IPV6

	open       = pb.Verdict_VERDICT_OPEN
	timeout    = pb.Verdict_VERDICT_BLOCKED_TIMEOUT
	reset      = pb.Verdict_VERDICT_BLOCKED_RESET
	intercept  = pb.Verdict_VERDICT_INTERCEPTED
	undecided  = pb.Verdict_VERDICT_INCONCLUSIVE
	classOP25B = pb.PolicyClass_POLICY_CLASS_OP25B
	classOpen  = pb.PolicyClass_POLICY_CLASS_OPEN
	classInt   = pb.PolicyClass_POLICY_CLASS_INTERCEPT
	classMixed = pb.PolicyClass_POLICY_CLASS_MIXED
)

const (
	agentA = "agent-3f9c1a2b4d5e6f70"
	// submission is the one-off contribution the fake knows.
	submission = "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c90"
	agentC     = "agent-c05d7e9a1b2f3468"
	refmta     = "refmta-51a7c3e9d2b40f86"
)

func ts(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

func day(s string) *timestamppb.Timestamp { return ts(s + "T00:00:00Z") }

func window() *pb.TimeRange { return dataset.Rolling(30, now) }

// share makes a Share with its Wilson score 95% interval, as the query
// layer computes it, rounded so that the golden files stay readable.
func share(v pb.Verdict, count, n float64) *pb.Share {
	const z = 1.96
	p := count / n
	d := 1 + z*z/n
	centre := (p + z*z/(2*n)) / d
	spread := z * math.Sqrt(p*(1-p)/n+z*z/(4*n*n)) / d
	round := func(x float64) float64 { return math.Round(x*1e6) / 1e6 }
	return &pb.Share{Verdict: v, Count: count, Share: round(p), WilsonLow: round(centre - spread), WilsonHigh: round(centre + spread)}
}

func ports(p25, p587, p465 []*pb.Share, prefixes uint64) []*pb.PortStats {
	return []*pb.PortStats{
		{Port: 25, Agents: prefixes + 2, Prefixes: prefixes, Results: 40 * prefixes, Shares: p25},
		{Port: 587, Agents: prefixes + 2, Prefixes: prefixes, Results: 40 * prefixes, Shares: p587},
		{Port: 465, Agents: prefixes + 1, Prefixes: prefixes, Results: 38 * prefixes, Shares: p465},
	}
}

var (
	as64500v4 = &pb.ASNSummary{
		Asn: 64500, Name: "EXAMPLE-JP Example Broadband K.K.", Country: "JP", Family: v4,
		PolicyClass: classOP25B, Window: window(), Agents: 14, Prefixes: 12,
		Ports: ports(
			[]*pb.Share{share(timeout, 11, 12), share(open, 1, 12)},
			[]*pb.Share{share(open, 12, 12)},
			[]*pb.Share{share(open, 11, 12), share(reset, 1, 12)}, 12),
	}
	as64500v6 = &pb.ASNSummary{
		Asn: 64500, Name: "EXAMPLE-JP Example Broadband K.K.", Country: "JP", Family: v6,
		PolicyClass: classOpen, Window: window(), Agents: 6, Prefixes: 5,
		Ports: ports(
			[]*pb.Share{share(open, 5, 5)},
			[]*pb.Share{share(open, 5, 5)},
			[]*pb.Share{share(open, 5, 5)}, 5),
	}
	as64501v4 = &pb.ASNSummary{
		Asn: 64501, Name: "MOBILE-JP Example Mobile Inc.", Country: "JP", Family: v4,
		PolicyClass: classInt, Window: window(), Agents: 9, Prefixes: 4,
		Ports: ports(
			[]*pb.Share{share(intercept, 4, 4)},
			[]*pb.Share{share(open, 4, 4)},
			[]*pb.Share{share(open, 4, 4)}, 4),
	}
	as64502v4 = &pb.ASNSummary{
		Asn: 64502, Name: "CABLE-JP Example Cable Co.", Country: "JP", Family: v4,
		PolicyClass: classMixed, Window: window(), Agents: 7, Prefixes: 6,
		Ports: ports(
			[]*pb.Share{share(timeout, 3, 6), share(open, 3, 6)},
			[]*pb.Share{share(open, 6, 6)},
			[]*pb.Share{share(open, 6, 6)}, 6),
	}

	infoResponse = &pb.GetInfoResponse{
		SoftwareVersion: "v0.4.0", SchemaVersion: "1.0", Licence: "CC-BY-4.0",
		RefreshedAt: ts("2026-03-08T11:55:00Z"), WindowDays: []uint32{7, 30, 90},
		DefaultWindowDays: 30, MaxExportDays: 31, MaxWindowDays: 366,
		ReadFromReplica: true, ReplicaLag: durationpb.New(1500 * time.Millisecond),
	}
	change64500 = &pb.PolicyChange{Asn: 64500, Family: v4, FromClass: classOpen, ToClass: classOP25B, ChangedAt: day("2026-02-20"), Country: "JP"}
	change64501 = &pb.PolicyChange{Asn: 64501, Family: v4, FromClass: classOP25B, ToClass: classInt, ChangedAt: day("2026-02-27"), Country: "JP"}
)

// exportResults are what the fake export emits, in batches of two.
var exportResults = []*pb.PublicResult{
	{ResultId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c01", MeasuredAt: ts("2026-03-01T00:14:03.512345Z"), Asn: 64500, Country: "JP", Prefix: "192.0.2.0/24", Family: v4, Port: 25, Verdict: timeout, Failure: "timeout", RefmtaId: refmta, AgentId: agentA, RefmtaCharged: true},
	{ResultId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c02", MeasuredAt: ts("2026-03-01T00:14:03.6Z"), Asn: 64500, Country: "JP", Prefix: "192.0.2.0/24", Family: v4, Port: 587, Verdict: open, RefmtaId: refmta, AgentId: agentA},
	{ResultId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c03", MeasuredAt: ts("2026-03-01T00:14:04Z"), Asn: 64500, Country: "JP", Prefix: "2001:db8:4a00::/48", Family: v6, Port: 25, Verdict: open, RefmtaId: refmta, OneOff: true, SubmissionId: submission},
	{ResultId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c04", MeasuredAt: ts("2026-03-02T09:30:00.000001Z"), Asn: 64501, Country: "JP", Prefix: "198.51.100.0/24", Family: v4, Port: 25, Verdict: intercept, Failure: "proof_missing", RefmtaId: refmta, AgentId: agentC},
	{ResultId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c05", MeasuredAt: ts("2026-03-07T23:59:59.999999Z"), Asn: 64501, Country: "JP", Prefix: "198.51.100.0/24", Family: v4, Port: 465, Verdict: undecided, Failure: "control_unreachable, \"quoted\"", RefmtaId: refmta, AgentId: agentC},
}

var errBroken = errors.New("store: query results: connection reset by peer")

// fake is a Querier over the fixtures above. It records the last request
// and can be told to fail an export.
type fake struct {
	mu   sync.Mutex
	last proto.Message
	// failBefore fails an export before it emits; failAfter after emitting
	// that many batches (when > 0).
	failBefore error
	failAfter  int
	// block, when set, holds every export until it is closed.
	block chan struct{}
	// results, when not nil, replace exportResults.
	results []*pb.PublicResult
	// events is the log of changes; lastEvents the filter last asked.
	events     []dataset.ChangeEvent
	lastEvents dataset.EventFilter
}

func (f *fake) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = m
}

func (f *fake) request() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func notFound(asn uint32) error {
	return fmt.Errorf("%w: AS%d has no published results", dataset.ErrNotFound, asn)
}

func (f *fake) ChangeEvents(_ context.Context, ef dataset.EventFilter) ([]dataset.ChangeEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastEvents = ef
	var out []dataset.ChangeEvent
	for _, e := range f.events {
		if (ef.ASN == 0 || e.ASN == ef.ASN) && (ef.Country == "" || e.Country == ef.Country) && len(out) < ef.Limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fake) GetSubmission(_ context.Context, id string) (*pb.Submission, error) {
	if id != submission {
		return nil, fmt.Errorf("%w: no submission %s", dataset.ErrNotFound, id)
	}
	return &pb.Submission{SubmissionId: id, AgentVersion: "test", Results: exportResults[2:3],
		Networks: []*pb.SubmissionNetwork{{Family: v6, Prefix: "2001:db8:4a00::/48", Asn: 64500, Country: "JP"}}}, nil
}

func (f *fake) GetInfo(_ context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	f.record(req)
	return infoResponse, nil
}

func (f *fake) ListASNs(_ context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	f.record(req)
	if req.GetCountry() == "ZZ" {
		return nil, errBroken
	}
	return &pb.ListASNsResponse{Asns: []*pb.ASNSummary{as64500v4, as64500v6, as64501v4}, NextPageToken: "eyJhc24iOjY0NTAxfQ"}, nil
}

func (f *fake) GetASN(_ context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	f.record(req)
	if req.GetAsn() != 64500 {
		return nil, notFound(req.GetAsn())
	}
	return &pb.GetASNResponse{
		Summaries: []*pb.ASNSummary{as64500v4, as64500v6},
		Timeline: []*pb.TimelinePoint{
			{Day: day("2026-02-19"), PolicyClass: classOpen, Family: v4, Agents: 5, Prefixes: 4, Ports: ports([]*pb.Share{share(open, 4, 4)}, []*pb.Share{share(open, 4, 4)}, []*pb.Share{share(open, 4, 4)}, 4)},
			{Day: day("2026-02-20"), PolicyClass: classOP25B, Family: v4, Agents: 6, Prefixes: 5, Ports: ports([]*pb.Share{share(timeout, 5, 5)}, []*pb.Share{share(open, 5, 5)}, []*pb.Share{share(open, 5, 5)}, 5)},
		},
		Changes:  []*pb.PolicyChange{change64500},
		Evidence: []string{"220 relay.example.net ESMTP [address]"},
		EvidenceItems: []*pb.EvidenceItem{{
			Family: v4, Port: 25, Verdict: intercept, Text: "220 relay.example.net ESMTP [address]",
			FirstSeen: ts("2026-02-03T04:05:06Z"), LastSeen: ts("2026-03-07T22:00:00Z"), Results: 118,
		}},
	}, nil
}

func (f *fake) GetPeers(_ context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	f.record(req)
	if req.GetAsn() != 64500 {
		return nil, notFound(req.GetAsn())
	}
	return &pb.GetPeersResponse{
		Subject: as64500v4, Rank: 1, PeerCount: 3,
		Peers: []*pb.ASNSummary{as64500v4, as64502v4, as64501v4},
		Gaps:  []*pb.PeerGap{{Family: v6, Kind: "ipv6_open_ipv4_blocked", Detail: "port 25 is open over IPv6 (5 of 5 prefixes) while IPv4 blocks it"}},
	}, nil
}

func (f *fake) ListPolicyChanges(_ context.Context, req *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	f.record(req)
	return &pb.ListPolicyChangesResponse{Changes: []*pb.PolicyChange{change64501, change64500}}, nil
}

func (f *fake) ListCountries(_ context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	f.record(req)
	return &pb.ListCountriesResponse{Countries: []*pb.CountrySummary{
		{Country: "JP", Family: v4, Asns: 3, Agents: 30, Classes: map[string]uint64{"OP25B": 1, "INTERCEPT": 1, "MIXED": 1}, Op25BShare: 0.5},
		{Country: "JP", Family: v6, Asns: 1, Agents: 6, Classes: map[string]uint64{"OPEN": 1}, Op25BShare: 0},
	}}, nil
}

func (f *fake) GetPrefixes(_ context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	f.record(req)
	if req.GetAsn() != 64500 {
		return nil, notFound(req.GetAsn())
	}
	verdicts := func(port uint32, v pb.Verdict) *pb.PortVerdict {
		return &pb.PortVerdict{Port: port, Verdict: v, Agents: 1}
	}
	return &pb.GetPrefixesResponse{Window: window(), NextPageToken: "NCAxOTguNTEuMTAwLjAvMjQ", Prefixes: []*pb.PrefixSummary{
		{Family: v4, Prefix: "192.0.2.0/24", Agents: 2, Results: 240, FirstSeen: day("2026-02-07"), LastSeen: day("2026-03-08"),
			Ports: []*pb.PrefixPort{
				{Port: 25, Verdict: open, AgentVerdicts: []*pb.VerdictAgents{{Verdict: open, Agents: 2}}, Results: 80, RefmtaCharged: 2},
				{Port: 465, Verdict: open, AgentVerdicts: []*pb.VerdictAgents{{Verdict: open, Agents: 2}}, Results: 80},
				{Port: 587, Verdict: open, AgentVerdicts: []*pb.VerdictAgents{{Verdict: open, Agents: 2}}, Results: 80},
			},
			Days: []*pb.PrefixDay{{Day: day("2026-03-08"), Ports: []*pb.PortVerdict{verdicts(25, open), verdicts(465, open), verdicts(587, open)}}}},
		{Family: v4, Prefix: "198.51.100.0/24", Agents: 1, Results: 41, FirstSeen: day("2026-03-01"), LastSeen: day("2026-03-08"),
			Ports: []*pb.PrefixPort{
				{Port: 25, Verdict: timeout, AgentVerdicts: []*pb.VerdictAgents{{Verdict: timeout, Agents: 1}}, Results: 14},
				{Port: 465, Results: 13},
				{Port: 587, Verdict: open, AgentVerdicts: []*pb.VerdictAgents{{Verdict: open, Agents: 1}}, Results: 14},
			},
			Days: []*pb.PrefixDay{
				{Day: day("2026-03-07"), Ports: []*pb.PortVerdict{verdicts(25, open), verdicts(587, open)}},
				{Day: day("2026-03-08"), Ports: []*pb.PortVerdict{verdicts(25, timeout), verdicts(587, open)}},
			}},
	}}, nil
}

func (f *fake) ExportResults(ctx context.Context, req *pb.ExportResultsRequest, emit func([]*pb.PublicResult) error) error {
	f.record(req)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.failBefore != nil {
		return f.failBefore
	}
	results := exportResults
	if f.results != nil {
		results = f.results
	}
	for i := 0; i < len(results); i += 2 {
		if f.failAfter > 0 && i/2 == f.failAfter {
			return errBroken
		}
		if err := emit(results[i:min(i+2, len(results))]); err != nil {
			return err
		}
	}
	return nil
}
