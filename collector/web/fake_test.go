package web

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/shares"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// fakeNow is the fake dataset's today: the default 30-day window is
// [2026-02-19, 2026-03-21).
var fakeNow = time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC)

const (
	v4 = pb.AddressFamily_ADDRESS_FAMILY_IPV4
	v6 = pb.AddressFamily_ADDRESS_FAMILY_IPV6

	classOP25B        = pb.PolicyClass_POLICY_CLASS_OP25B
	classIntercept    = pb.PolicyClass_POLICY_CLASS_INTERCEPT
	classOpen         = pb.PolicyClass_POLICY_CLASS_OPEN
	classAllBlocked   = pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED
	classMixed        = pb.PolicyClass_POLICY_CLASS_MIXED
	classInsufficient = pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA
)

// hostileBanner is what a hostile relay might answer: markup and quotes
// that must come out inert.
const hostileBanner = `220 mx.hikari-mobile.example ESMTP <script>alert("pwned")</script> '><img src=x onerror=alert(1)> & "quoted"`

// fakeNet is one ASN and family of the fake dataset.
type fakeNet struct {
	asn      uint32
	name     string
	country  string
	family   pb.AddressFamily
	class    pb.PolicyClass
	agents   uint64
	prefixes uint64
	// changedFrom and changedOn: the class before changedOn, if set.
	changedFrom pb.PolicyClass
	changedOn   time.Time
}

// fakeNets covers every class, both families and three countries.
var fakeNets = []fakeNet{
	{asn: 64500, name: "Sakura Broadband", country: "JP", family: v4, class: classOP25B, agents: 120, prefixes: 48,
		changedFrom: classOpen, changedOn: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
	{asn: 64500, name: "Sakura Broadband", country: "JP", family: v6, class: classOpen, agents: 60, prefixes: 20},
	{asn: 64501, name: "Hikari Mobile", country: "JP", family: v4, class: classIntercept, agents: 40, prefixes: 15},
	{asn: 64501, name: "Hikari Mobile", country: "JP", family: v6, class: classInsufficient, agents: 3, prefixes: 2},
	{asn: 64502, name: "Kansai Cable", country: "JP", family: v4, class: classAllBlocked, agents: 25, prefixes: 9},
	{asn: 64503, name: "Tokyo Data Center", country: "JP", family: v4, class: classOpen, agents: 12, prefixes: 6},
	{asn: 64503, name: "Tokyo Data Center", country: "JP", family: v6, class: classOpen, agents: 8, prefixes: 4},
	{asn: 64504, name: "Prairie Fiber", country: "US", family: v4, class: classMixed, agents: 30, prefixes: 12,
		changedFrom: classOP25B, changedOn: time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
	{asn: 64504, name: "Prairie Fiber", country: "US", family: v6, class: classOP25B, agents: 10, prefixes: 5},
	{asn: 64505, name: "Coastal Wireless", country: "US", family: v4, class: classOP25B, agents: 70, prefixes: 30},
	{asn: 64506, name: "Rheinnetz GmbH", country: "DE", family: v4, class: classOpen, agents: 22, prefixes: 10},
	{asn: 64506, name: "Rheinnetz GmbH", country: "DE", family: v6, class: classOpen, agents: 15, prefixes: 7},
	{asn: 64507, name: `Berliner Funk & Netz "B&F" <eG>`, country: "DE", family: v4, class: classInsufficient, agents: 2, prefixes: 1},
}

// fakeQuerier serves fakeNets like the query layer would. fail makes a
// method return an error.
type fakeQuerier struct {
	now      time.Time
	pageSize int
	fail     map[string]error
	// replicaLag, when set, makes GetInfo say the data come from a replica
	// this far behind.
	replicaLag *durationpb.Duration
}

func newFake() *fakeQuerier { return &fakeQuerier{now: fakeNow, pageSize: 4, fail: map[string]error{}} }

var _ Querier = (*fakeQuerier)(nil)

type vc struct {
	v pb.Verdict
	n float64
}

// portStats builds a port's stats with shares and Wilson intervals as the
// query layer computes them.
func portStats(port uint32, agents, prefixes uint64, counts ...vc) *pb.PortStats {
	p := &pb.PortStats{Port: port, Agents: agents, Prefixes: prefixes, Results: agents * 96}
	for _, c := range counts {
		if c.n == 0 {
			continue
		}
		lo, hi := shares.Wilson(c.n, float64(prefixes))
		p.Shares = append(p.Shares, &pb.Share{Verdict: c.v, Count: c.n, Share: c.n / float64(prefixes), WilsonLow: lo, WilsonHigh: hi})
	}
	return p
}

// profile returns the ports of a class with n prefixes; jitter (0..1)
// moves some prefixes between verdicts so that days differ.
func profile(class pb.PolicyClass, agents, n uint64, jitter float64) []*pb.PortStats {
	f := float64(n)
	part := func(x float64) float64 { return math.Round(f * x) }
	const (
		open     = pb.Verdict_VERDICT_OPEN
		timeout  = pb.Verdict_VERDICT_BLOCKED_TIMEOUT
		reset    = pb.Verdict_VERDICT_BLOCKED_RESET
		unreach  = pb.Verdict_VERDICT_BLOCKED_UNREACHABLE
		intercep = pb.Verdict_VERDICT_INTERCEPTED
		tampered = pb.Verdict_VERDICT_TAMPERED
	)
	j := 0.08 * jitter
	switch class {
	case classOP25B:
		b := part(0.82 + j)
		r := part(0.08)
		return []*pb.PortStats{
			portStats(25, agents, n, vc{timeout, b}, vc{reset, r}, vc{open, f - b - r}),
			portStats(587, agents, n, vc{open, f}),
			portStats(465, agents, n, vc{open, f - part(0.05)}, vc{timeout, part(0.05)}),
		}
	case classIntercept:
		i := part(0.87 + j)
		return []*pb.PortStats{
			portStats(25, agents, n, vc{intercep, i}, vc{open, f - i}),
			portStats(587, agents, n, vc{open, f - part(0.1)}, vc{tampered, part(0.1)}),
			portStats(465, agents, n, vc{open, f}),
		}
	case classOpen:
		t := part(0.05 * jitter)
		return []*pb.PortStats{
			portStats(25, agents, n, vc{open, f - t}, vc{timeout, t}),
			portStats(587, agents, n, vc{open, f}),
			portStats(465, agents, n, vc{open, f}),
		}
	case classAllBlocked:
		return []*pb.PortStats{
			portStats(25, agents, n, vc{unreach, f}),
			portStats(587, agents, n, vc{timeout, f}),
			portStats(465, agents, n, vc{timeout, f - part(0.1)}, vc{reset, part(0.1)}),
		}
	case classMixed:
		b := part(0.45 + j)
		return []*pb.PortStats{
			portStats(25, agents, n, vc{timeout, b}, vc{open, f - b}),
			portStats(587, agents, n, vc{open, f}),
		}
	default: // insufficient data
		return []*pb.PortStats{portStats(25, agents, n, vc{open, math.Ceil(f / 2)}, vc{timeout, math.Floor(f / 2)})}
	}
}

func (q *fakeQuerier) window(w *pb.TimeRange) *pb.TimeRange {
	if w == nil {
		return dataset.Rolling(30, q.now)
	}
	return w
}

func (q *fakeQuerier) summary(n fakeNet, w *pb.TimeRange) *pb.ASNSummary {
	return &pb.ASNSummary{
		Asn: n.asn, Name: n.name, Country: n.country, Family: n.family, PolicyClass: n.class,
		Ports: profile(n.class, n.agents, n.prefixes, 0), Window: q.window(w), Agents: n.agents, Prefixes: n.prefixes,
	}
}

// timeline has one point per day of the window, but skips every ninth day
// of AS64503 (no data).
func (q *fakeQuerier) timeline(n fakeNet, w *pb.TimeRange) []*pb.TimelinePoint {
	var out []*pb.TimelinePoint
	start, end := w.GetStart().AsTime(), w.GetEnd().AsTime()
	for d, i := start, 0; d.Before(end) && !d.After(q.now); d, i = d.Add(dataset.Day), i+1 {
		if n.asn == 64503 && i%9 == 4 {
			continue
		}
		class := n.class
		if !n.changedOn.IsZero() && d.Before(n.changedOn) {
			class = n.changedFrom
		}
		jitter := float64((int(n.asn)+i*7)%5) / 4
		out = append(out, &pb.TimelinePoint{Day: timestamppb.New(d), PolicyClass: class, Family: n.family,
			Ports: profile(class, n.agents, n.prefixes, jitter)[:1]})
	}
	return out
}

func (q *fakeQuerier) ListASNs(ctx context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	if err := q.fail["ListASNs"]; err != nil {
		return nil, err
	}
	var all []*pb.ASNSummary
	for _, n := range fakeNets {
		if (req.GetCountry() == "" || req.GetCountry() == n.country) &&
			(req.GetPolicyClass() == 0 || req.GetPolicyClass() == n.class) &&
			(req.GetFamily() == 0 || req.GetFamily() == n.family) {
			all = append(all, q.summary(n, req.GetWindow()))
		}
	}
	off := 0
	if req.GetPageToken() != "" {
		var err error
		if off, err = strconv.Atoi(req.GetPageToken()); err != nil || off > len(all) {
			return nil, fmt.Errorf("%w: page token %q", dataset.ErrInvalid, req.GetPageToken())
		}
	}
	resp := &pb.ListASNsResponse{}
	end := min(len(all), off+q.pageSize)
	resp.Asns = all[off:end]
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (q *fakeQuerier) GetASN(ctx context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	if err := q.fail["GetASN"]; err != nil {
		return nil, err
	}
	w := q.window(req.GetWindow())
	resp := &pb.GetASNResponse{}
	for _, n := range fakeNets {
		if n.asn != req.GetAsn() || (req.GetFamily() != 0 && req.GetFamily() != n.family) {
			continue
		}
		resp.Summaries = append(resp.Summaries, q.summary(n, w))
		resp.Timeline = append(resp.Timeline, q.timeline(n, w)...)
		on := timestamppb.New(n.changedOn)
		if !n.changedOn.IsZero() && !on.AsTime().Before(w.GetStart().AsTime()) && on.AsTime().Before(w.GetEnd().AsTime()) {
			resp.Changes = append(resp.Changes, &pb.PolicyChange{Asn: n.asn, Family: n.family, FromClass: n.changedFrom,
				ToClass: n.class, ChangedAt: on, Country: n.country})
		}
	}
	if len(resp.Summaries) == 0 {
		return nil, fmt.Errorf("ASN %d: %w", req.GetAsn(), dataset.ErrNotFound)
	}
	if req.GetAsn() == 64501 {
		seen := func(d int) *timestamppb.Timestamp { return timestamppb.New(fakeNow.AddDate(0, 0, -d)) }
		resp.EvidenceItems = []*pb.EvidenceItem{
			{Family: v4, Port: 25, Verdict: pb.Verdict_VERDICT_INTERCEPTED, Text: hostileBanner,
				FirstSeen: seen(28), LastSeen: seen(0), Results: 812},
			{Family: v4, Port: 587, Verdict: pb.Verdict_VERDICT_TAMPERED,
				Text: "certificate subject=CN=relay.hikari-mobile.example,O=Hikari Mobile \"Secure\" Relay sha256=3f9a1c0e5b7d2a4c6e8f0a1b3c5d7e9f", FirstSeen: seen(20), LastSeen: seen(2), Results: 37},
		}
		for _, e := range resp.EvidenceItems {
			resp.Evidence = append(resp.Evidence, e.GetText())
		}
	}
	return resp, nil
}

// fakePools are AS64500's prefixes: port 25 per day from the window's
// start, before and from fakeNow less 5 days.
var fakePools = []struct {
	family        pb.AddressFamily
	prefix        string
	agents        uint64
	before, after pb.Verdict
}{
	{v4, "192.0.2.0/24", 4, pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_BLOCKED_TIMEOUT},
	{v4, "198.51.100.0/24", 2, pb.Verdict_VERDICT_OPEN, pb.Verdict_VERDICT_BLOCKED_RESET},
	{v4, "203.0.113.0/24", 1, pb.Verdict_VERDICT_OPEN, pb.Verdict_VERDICT_OPEN},
	{v4, "100.64.7.0/24", 2, pb.Verdict_VERDICT_INTERCEPTED, pb.Verdict_VERDICT_INTERCEPTED},
	{v6, "2001:db8:5a00::/48", 1, pb.Verdict_VERDICT_OPEN, pb.Verdict_VERDICT_OPEN},
}

// GetPrefixes pages AS64500's fakePools; the other ASNs of fakeNets have
// none.
func (q *fakeQuerier) GetPrefixes(ctx context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	if err := q.fail["GetPrefixes"]; err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(fakeNets, func(n fakeNet) bool { return n.asn == req.GetAsn() }) {
		return nil, fmt.Errorf("prefixes of AS%d: %w", req.GetAsn(), dataset.ErrNotFound)
	}
	w := q.window(req.GetWindow())
	resp := &pb.GetPrefixesResponse{Window: w}
	if req.GetAsn() != 64500 {
		return resp, nil
	}
	switched := dataset.Today(q.now).Add(-5 * dataset.Day)
	var all []*pb.PrefixSummary
	for _, fp := range fakePools {
		if req.GetFamily() != 0 && req.GetFamily() != fp.family {
			continue
		}
		px := &pb.PrefixSummary{Family: fp.family, Prefix: fp.prefix, Agents: fp.agents, Results: 96 * fp.agents,
			FirstSeen: w.GetStart(), LastSeen: timestamppb.New(dataset.Today(q.now))}
		for d := w.GetStart().AsTime(); d.Before(w.GetEnd().AsTime()); d = d.Add(dataset.Day) {
			v := fp.before
			if !d.Before(switched) {
				v = fp.after
			}
			px.Days = append(px.Days, &pb.PrefixDay{Day: timestamppb.New(d), Ports: []*pb.PortVerdict{{Port: 25, Verdict: v, Agents: fp.agents}}})
		}
		p25 := &pb.PrefixPort{Port: 25, Verdict: fp.after, AgentVerdicts: []*pb.VerdictAgents{{Verdict: fp.after, Agents: fp.agents}}}
		if fp.before != fp.after { // one agent moved, the other did not yet
			p25.Verdict = fp.before
			p25.AgentVerdicts = []*pb.VerdictAgents{{Verdict: fp.before, Agents: 1}, {Verdict: fp.after, Agents: fp.agents - 1}}
		}
		px.Ports = []*pb.PrefixPort{p25,
			{Port: 465, Verdict: pb.Verdict_VERDICT_OPEN, AgentVerdicts: []*pb.VerdictAgents{{Verdict: pb.Verdict_VERDICT_OPEN, Agents: fp.agents}}},
			{Port: 587, Results: 12}}
		all = append(all, px)
	}
	off := 0
	if req.GetPageToken() != "" {
		var err error
		if off, err = strconv.Atoi(req.GetPageToken()); err != nil || off > len(all) {
			return nil, fmt.Errorf("%w: page token %q", dataset.ErrInvalid, req.GetPageToken())
		}
	}
	end := min(len(all), off+q.pageSize)
	resp.Prefixes = all[off:end]
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (q *fakeQuerier) GetPeers(ctx context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	if err := q.fail["GetPeers"]; err != nil {
		return nil, err
	}
	var subject *fakeNet
	for i, n := range fakeNets {
		if n.asn == req.GetAsn() && n.family == req.GetFamily() {
			subject = &fakeNets[i]
		}
	}
	if subject == nil {
		return nil, fmt.Errorf("peers of AS%d: %w", req.GetAsn(), dataset.ErrNotFound)
	}
	resp := &pb.GetPeersResponse{Subject: q.summary(*subject, req.GetWindow())}
	for _, n := range fakeNets {
		if n.country == subject.country && n.family == subject.family {
			resp.Peers = append(resp.Peers, q.summary(n, req.GetWindow()))
		}
	}
	blocked := func(s *pb.ASNSummary) float64 {
		if b := blockedShare(port(s.GetPorts(), 25)); b != nil {
			return b.Value
		}
		return -1
	}
	slices.SortStableFunc(resp.Peers, func(a, b *pb.ASNSummary) int { return cmp.Compare(blocked(b), blocked(a)) })
	resp.PeerCount = uint32(len(resp.Peers))
	for i, p := range resp.Peers {
		if p.GetAsn() == subject.asn {
			resp.Rank = uint32(i + 1)
		}
	}
	switch {
	case subject.asn == 64500:
		resp.Gaps = []*pb.PeerGap{{Family: v6, Kind: "ipv6_open_ipv4_blocked",
			Detail: "IPv4 port 25 blocked in 90% of prefixes, IPv6 open in 100%"}}
	case subject.asn == 64501:
		resp.Gaps = []*pb.PeerGap{
			{Family: v4, Kind: "intercepted", Detail: "87% of prefixes reach a foreign relay on port 25"},
			{Family: v4, Kind: "starttls_stripped", Detail: "<b>STARTTLS</b> removed on 587"},
		}
	case subject.asn == 64502:
		resp.Gaps = []*pb.PeerGap{{Family: v4, Kind: "submission_blocked", Detail: "587 and 465 blocked in 100% of prefixes"}}
	}
	return resp, nil
}

func (q *fakeQuerier) ListCountries(ctx context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	if err := q.fail["ListCountries"]; err != nil {
		return nil, err
	}
	type key struct {
		country string
		family  pb.AddressFamily
	}
	rows := map[key]*pb.CountrySummary{}
	var order []key
	for _, n := range fakeNets {
		if req.GetFamily() != 0 && req.GetFamily() != n.family {
			continue
		}
		k := key{n.country, n.family}
		c, ok := rows[k]
		if !ok {
			c = &pb.CountrySummary{Country: n.country, Family: n.family, Classes: map[string]uint64{}}
			rows[k] = c
			order = append(order, k)
		}
		c.Asns++
		c.Agents += n.agents
		c.Classes[dataset.ClassName(n.class)]++
	}
	resp := &pb.ListCountriesResponse{}
	for _, k := range order {
		c := rows[k]
		classified := c.Asns - c.Classes["INSUFFICIENT_DATA"]
		if classified > 0 {
			c.Op25BShare = float64(c.Classes["OP25B"]+c.Classes["ALL_SMTP_BLOCKED"]) / float64(classified)
		}
		resp.Countries = append(resp.Countries, c)
	}
	return resp, nil
}

func (q *fakeQuerier) GetInfo(ctx context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	if err := q.fail["GetInfo"]; err != nil {
		return nil, err
	}
	return &pb.GetInfoResponse{
		SoftwareVersion: "v0.4.0-test", SchemaVersion: "1.0", Licence: "CC-BY-4.0",
		RefreshedAt: timestamppb.New(fakeNow.Add(-5 * time.Minute)), WindowsRefreshedAt: timestamppb.New(fakeNow.Add(-14 * time.Minute)), WindowDays: []uint32{7, 30, 90},
		DefaultWindowDays: 30, MaxExportDays: 31, MaxWindowDays: 366, ReadFromReplica: q.replicaLag != nil, ReplicaLag: q.replicaLag,
		ReferenceMtaWindow: &pb.TimeRange{Start: timestamppb.New(fakeNow.Add(-7 * 24 * time.Hour).Truncate(24 * time.Hour)),
			End: timestamppb.New(fakeNow.Truncate(24 * time.Hour).Add(24 * time.Hour))},
		ReferenceMtas: []*pb.RefMTAStats{
			{RefmtaId: "refmta-tokyo", Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, Port: 25, Results: 120, Conclusive: 118,
				Blocked:       &pb.GroupShare{Count: 59, Share: 0.5, WilsonLow: 0.41, WilsonHigh: 0.59},
				OthersBlocked: &pb.GroupShare{Count: 118, Share: 1, WilsonLow: 0.97, WilsonHigh: 1}},
			{RefmtaId: "refmta-osaka", Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, Port: 25, Results: 120, Conclusive: 118, Charged: 59,
				Blocked:       &pb.GroupShare{Count: 118, Share: 1, WilsonLow: 0.97, WilsonHigh: 1},
				OthersBlocked: &pb.GroupShare{Count: 59, Share: 0.5, WilsonLow: 0.41, WilsonHigh: 0.59}, Flagged: true},
		},
	}, nil
}

// fakeSubmission is the one-off contribution the fake knows: an OP25B
// round from AS64501 over IPv4, and port 25 open over IPv6.
const fakeSubmission = "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c99"

func (q *fakeQuerier) GetSubmission(ctx context.Context, id string) (*pb.Submission, error) {
	if err := q.fail["GetSubmission"]; err != nil {
		return nil, err
	}
	if id != fakeSubmission {
		return nil, fmt.Errorf("%w: no submission %s", dataset.ErrNotFound, id)
	}
	at := timestamppb.New(fakeNow.Add(-time.Hour))
	r := func(fam pb.AddressFamily, prefix string, port uint32, v pb.Verdict, failure string) *pb.PublicResult {
		return &pb.PublicResult{ResultId: id, MeasuredAt: at, Asn: 64501, Country: "JP", Prefix: prefix, Family: fam, Port: port,
			Verdict: v, Failure: failure, RefmtaId: "refmta-tokyo", OneOff: true, SubmissionId: id}
	}
	return &pb.Submission{SubmissionId: id, SubmittedAt: at, MeasuredAt: at, AgentVersion: "v0.4.0",
		Networks: []*pb.SubmissionNetwork{
			{Family: v4, Prefix: "192.0.2.0/24", Asn: 64501, AsName: "Hikari Mobile", Country: "JP"},
			{Family: v6, Prefix: "2001:db8:4a00::/48", Asn: 64501, AsName: "Hikari Mobile", Country: "JP"},
		},
		Results: []*pb.PublicResult{
			r(v4, "192.0.2.0/24", 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT, "timeout"),
			r(v4, "192.0.2.0/24", 587, pb.Verdict_VERDICT_OPEN, ""),
			r(v4, "192.0.2.0/24", 465, pb.Verdict_VERDICT_OPEN, ""),
			r(v6, "2001:db8:4a00::/48", 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT, "timeout"),
		},
	}, nil
}
