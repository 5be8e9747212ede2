// Package datasetclienttest serves the collector's dataset API, the real
// handler of collector/httpapi, on a loopback port over a fake query layer
// holding fixed, realistic data, for the tests of the API's clients.
package datasetclienttest

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/httpapi"
	"github.com/op25b/observatory/collector/stream"
	"github.com/op25b/observatory/internal/shares"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Now is the fake's clock: the default window is the 30 UTC days ending
// with its day, 2026-02-11 to 2026-03-12.
var Now = time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)

// Server is a running fake. Set its fields before the requests they
// change.
type Server struct {
	URL string
	// PageSize is the size of a list's pages when the request names none
	// (default 3).
	PageSize int
	// ExportRows is how many rows an export has (default 5), spread evenly
	// over its range. They go out in batches of Chunk rows (default 1),
	// each flushed to the client. BreakAfter, if positive, fails the export
	// once that many rows have gone out, which breaks off the transfer.
	ExportRows, Chunk, BreakAfter int
	// Stream serves /api/v1/stream: what a test publishes to it goes to
	// the subscribers.
	Stream *stream.Broker

	mu       sync.Mutex
	requests []string
}

// Start starts a fake on 127.0.0.1 and stops it when the test ends.
func Start(t testing.TB) *Server {
	s := &Server{PageSize: 3, ExportRows: 5, Chunk: 1, Stream: stream.NewBroker(stream.Options{})}
	api := httpapi.New(querier{s}, httpapi.Options{Now: func() time.Time { return Now }, Stream: s.Stream})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.URL.RequestURI())
		s.mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	// Before the server closes, which waits for live streams to end.
	t.Cleanup(s.Stream.Close)
	s.URL = ts.URL
	return s
}

// Requests returns the request URIs served so far, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

const (
	v4 = pb.AddressFamily_ADDRESS_FAMILY_IPV4
	v6 = pb.AddressFamily_ADDRESS_FAMILY_IPV6

	open    = pb.Verdict_VERDICT_OPEN
	timeout = pb.Verdict_VERDICT_BLOCKED_TIMEOUT
	reset   = pb.Verdict_VERDICT_BLOCKED_RESET
	icpt    = pb.Verdict_VERDICT_INTERCEPTED

	classOP25B = pb.PolicyClass_POLICY_CLASS_OP25B
	classInt   = pb.PolicyClass_POLICY_CLASS_INTERCEPT
	classOpen  = pb.PolicyClass_POLICY_CLASS_OPEN
	classAll   = pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED
	classMixed = pb.PolicyClass_POLICY_CLASS_MIXED
	classFew   = pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA
)

// querier is the query layer the API serves, as collector/dataset answers:
// nil windows are the default window, errors wrap dataset.ErrInvalid or
// dataset.ErrNotFound.
type querier struct{ s *Server }

// match reports whether got passes a filter, want, where zero is any.
func match[T comparable](want, got T) bool {
	var zero T
	return want == zero || want == got
}

func window(w *pb.TimeRange) *pb.TimeRange {
	if w == nil {
		return dataset.Rolling(30, Now)
	}
	return w
}

// page cuts out the page of size items that token, an offset this fake
// gave, starts.
func page[T any](items []T, size int, token string) ([]T, string, error) {
	from := 0
	if token != "" {
		rest, ok := strings.CutPrefix(token, "offset-")
		n, err := strconv.Atoi(rest)
		if !ok || err != nil || n < 0 || n > len(items) {
			return nil, "", fmt.Errorf("%w: page_token %q is not one this server gave", dataset.ErrInvalid, token)
		}
		from = n
	}
	to := min(len(items), from+size)
	if to < len(items) {
		return items[from:to], fmt.Sprintf("offset-%d", to), nil
	}
	return items[from:to], "", nil
}

func (q querier) GetInfo(context.Context, *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	return &pb.GetInfoResponse{SoftwareVersion: "v0.4.0", SchemaVersion: dataset.SchemaVersion, Licence: dataset.Licence,
		RefreshedAt: timestamppb.New(Now.Add(-4 * time.Minute)), WindowsRefreshedAt: timestamppb.New(Now.Add(-11 * time.Minute)), WindowDays: []uint32{7, 30, 90}, DefaultWindowDays: 30,
		MaxExportDays: 31, MaxWindowDays: 366, ReadFromReplica: true, ReplicaLag: durationpb.New(1500 * time.Millisecond),
		ReferenceMtaWindow: &pb.TimeRange{Start: timestamppb.New(day("2026-03-06")), End: timestamppb.New(day("2026-03-13"))},
		ReferenceMtas: []*pb.RefMTAStats{
			{RefmtaId: "refmta-51a7c3e9d2b40f86", Family: v4, Port: 25, Results: 120, Conclusive: 118, Charged: 0,
				Blocked:       &pb.GroupShare{Count: 59, Share: 0.5, WilsonLow: 0.411, WilsonHigh: 0.589},
				OthersBlocked: &pb.GroupShare{Count: 118, Share: 1, WilsonLow: 0.968, WilsonHigh: 1}},
			{RefmtaId: "refmta-c2d4e6f8a0b1c3d5", Family: v4, Port: 25, Results: 120, Conclusive: 118, Charged: 59,
				Blocked:       &pb.GroupShare{Count: 118, Share: 1, WilsonLow: 0.968, WilsonHigh: 1},
				OthersBlocked: &pb.GroupShare{Count: 59, Share: 0.5, WilsonLow: 0.411, WilsonHigh: 0.589}, Flagged: true},
		}}, nil
}

func (q querier) ListASNs(_ context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	var out []*pb.ASNSummary
	for _, a := range Summaries(window(req.Window)) {
		if match(req.Country, a.Country) && match(req.Family, a.Family) && match(req.PolicyClass, a.PolicyClass) {
			out = append(out, a)
		}
	}
	items, next, err := page(out, cmp.Or(int(req.PageSize), q.s.PageSize), req.PageToken)
	if err != nil {
		return nil, err
	}
	return &pb.ListASNsResponse{Asns: items, NextPageToken: next}, nil
}

func (q querier) GetASN(_ context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	w := window(req.Window)
	resp := &pb.GetASNResponse{}
	for _, a := range Summaries(w) {
		if a.Asn == req.Asn && match(req.Family, a.Family) {
			resp.Summaries = append(resp.Summaries, a)
			resp.Timeline = append(resp.Timeline, Timeline(a.Asn, a.Family, w)...)
		}
	}
	if len(resp.Summaries) == 0 {
		return nil, fmt.Errorf("%w: no measurements from AS%d", dataset.ErrNotFound, req.Asn)
	}
	for _, c := range changes { // of all time, as the query layer gives them
		if c.Asn == req.Asn && match(req.Family, c.Family) {
			resp.Changes = append(resp.Changes, c)
		}
	}
	if req.Asn == 64501 && match(req.Family, v4) {
		item := &pb.EvidenceItem{Family: v4, Port: 25, Verdict: icpt, Text: "220 smtp-proxy.sakura-mobile.example ESMTP Postfix [redacted]",
			FirstSeen: timestamppb.New(day("2026-03-02").Add(8 * time.Hour)), LastSeen: timestamppb.New(Now.Add(-2 * time.Hour)), Results: 412}
		resp.EvidenceItems, resp.Evidence = []*pb.EvidenceItem{item}, []string{item.Text}
	}
	return resp, nil
}

// GetPeers ranks the subject among the classified ASNs of its country and
// family (IPv4 when none is asked) and lists the ranking, as the query
// layer does.
func (q querier) GetPeers(_ context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	family := cmp.Or(req.Family, v4)
	all := Summaries(window(req.Window))
	i := slices.IndexFunc(all, func(a *pb.ASNSummary) bool { return a.Asn == req.Asn && a.Family == family })
	if i < 0 {
		return nil, fmt.Errorf("%w: no measurements from AS%d over %s in this window", dataset.ErrNotFound, req.Asn, dataset.FamilyName(family))
	}
	subject := all[i]
	ranked := slices.DeleteFunc(all, func(a *pb.ASNSummary) bool {
		return a.Country != subject.Country || a.Family != family || (a.PolicyClass == classFew && a != subject)
	})
	slices.SortStableFunc(ranked, func(a, b *pb.ASNSummary) int {
		return cmp.Or(cmp.Compare(blocked25(b), blocked25(a)), cmp.Compare(a.Asn, b.Asn))
	})
	resp := &pb.GetPeersResponse{Subject: subject, PeerCount: uint32(len(ranked))}
	resp.Peers = ranked
	for i, a := range ranked {
		if a == subject {
			resp.Rank = uint32(i + 1)
		}
	}
	if subject.Asn == 64500 {
		resp.Gaps = []*pb.PeerGap{{Family: v6, Kind: "ipv6_open_ipv4_blocked",
			Detail: "port 25 is blocked over IPv4 (91% of prefixes) but open over IPv6 (88%)"}}
	}
	return resp, nil
}

// blocked25 is the share of a summary's port-25 prefixes that are blocked;
// port 25 comes first.
func blocked25(a *pb.ASNSummary) float64 {
	n := 0.0
	for _, s := range a.Ports[0].Shares {
		if s.Verdict == timeout || s.Verdict == reset {
			n += s.Share
		}
	}
	return n
}

func (q querier) ListPolicyChanges(_ context.Context, req *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	var out []*pb.PolicyChange
	for _, c := range changes {
		at, w := c.ChangedAt.AsTime(), req.Window // no window: all time
		if match(req.Country, c.Country) && match(req.Asn, c.Asn) &&
			(w == nil || !at.Before(w.Start.AsTime()) && at.Before(w.End.AsTime())) {
			out = append(out, c)
		}
	}
	items, next, err := page(out, cmp.Or(int(req.PageSize), q.s.PageSize), req.PageToken)
	if err != nil {
		return nil, err
	}
	return &pb.ListPolicyChangesResponse{Changes: items, NextPageToken: next}, nil
}

// ListCountries answers the rollup of Summaries.
func (q querier) ListCountries(_ context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	resp := &pb.ListCountriesResponse{}
	for _, c := range []*pb.CountrySummary{
		{Country: "DE", Family: v4, Asns: 3, Agents: 57, Classes: map[string]uint64{"OPEN": 1, "MIXED": 1, "INSUFFICIENT_DATA": 1}},
		{Country: "JP", Family: v4, Asns: 3, Agents: 211, Classes: map[string]uint64{"OP25B": 1, "INTERCEPT": 1, "ALL_SMTP_BLOCKED": 1}, Op25BShare: 2.0 / 3},
		{Country: "JP", Family: v6, Asns: 1, Agents: 19, Classes: map[string]uint64{"OPEN": 1}},
	} {
		if match(req.Family, c.Family) {
			resp.Countries = append(resp.Countries, c)
		}
	}
	return resp, nil
}

// GetPrefixes answers AS64500's prefixes (Prefixes), the other ASNs of
// Summaries with none, any other ASN as not measured.
func (q querier) GetPrefixes(_ context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	w := window(req.Window)
	if !slices.ContainsFunc(Summaries(w), func(a *pb.ASNSummary) bool { return a.Asn == req.Asn }) {
		return nil, fmt.Errorf("%w: no measurements from AS%d", dataset.ErrNotFound, req.Asn)
	}
	var out []*pb.PrefixSummary
	if req.Asn == 64500 {
		out = slices.DeleteFunc(Prefixes(w), func(p *pb.PrefixSummary) bool { return !match(req.Family, p.Family) })
	}
	items, next, err := page(out, cmp.Or(int(req.PageSize), q.s.PageSize), req.PageToken)
	if err != nil {
		return nil, err
	}
	return &pb.GetPrefixesResponse{Prefixes: items, NextPageToken: next, Window: w}, nil
}

// Prefixes returns AS64500's prefixes with results in window w, as the
// query layer makes them: its dynamic pool blocked since its agents
// started, a second pool open until 2026-02-22 and blocked from the day
// AS64500 turned OP25B, its static pool open, and two IPv6 prefixes left
// open; 587 and 465 open everywhere. A prefix's verdict over the window
// is that of most of its days, ties to the lower verdict.
func Prefixes(w *pb.TimeRange) []*pb.PrefixSummary {
	switched := day("2026-02-23")
	pools := []struct {
		family        pb.AddressFamily
		prefix        string
		agents        uint64
		before, after pb.Verdict // port 25 before and from switched
	}{
		{v4, "192.0.2.0/24", 3, timeout, timeout},
		{v4, "198.51.100.0/24", 2, open, reset},
		{v4, "203.0.113.0/24", 1, open, open},
		{v6, "2001:db8:4a00::/48", 1, open, open},
		{v6, "2001:db8:4a01::/48", 1, open, open},
	}
	from, end := dataset.Today(w.Start.AsTime()), w.End.AsTime()
	if first := day("2026-02-11"); from.Before(first) {
		from = first
	}
	if tomorrow := dataset.Today(Now).Add(dataset.Day); tomorrow.Before(end) {
		end = tomorrow
	}
	var out []*pb.PrefixSummary
	for _, p := range pools {
		s := &pb.PrefixSummary{Family: p.family, Prefix: p.prefix, Agents: p.agents}
		days := map[pb.Verdict]uint64{}
		for d := from; d.Before(end); d = d.Add(dataset.Day) {
			v := p.before
			if !d.Before(switched) {
				v = p.after
			}
			days[v]++
			s.Days = append(s.Days, &pb.PrefixDay{Day: timestamppb.New(d), Ports: []*pb.PortVerdict{
				{Port: 25, Verdict: v, Agents: p.agents}, {Port: 465, Verdict: open, Agents: p.agents}, {Port: 587, Verdict: open, Agents: p.agents}}})
		}
		if len(s.Days) == 0 {
			continue
		}
		s.FirstSeen, s.LastSeen = s.Days[0].Day, s.Days[len(s.Days)-1].Day
		v25 := p.before
		if days[p.after] > days[p.before] || days[p.after] == days[p.before] && p.after < p.before {
			v25 = p.after
		}
		n := 8 * p.agents * uint64(len(s.Days)) // results a port
		s.Results = 3 * n
		for port, v := range map[uint32]pb.Verdict{25: v25, 465: open, 587: open} {
			s.Ports = append(s.Ports, &pb.PrefixPort{Port: port, Verdict: v, Results: n,
				AgentVerdicts: []*pb.VerdictAgents{{Verdict: v, Agents: p.agents}}})
		}
		slices.SortFunc(s.Ports, func(a, b *pb.PrefixPort) int { return cmp.Compare(a.Port, b.Port) })
		out = append(out, s)
	}
	return out
}

var errBroken = errors.New("datasetclienttest: export broken off, as configured")

func (q querier) GetSubmission(_ context.Context, id string) (*pb.Submission, error) {
	return nil, fmt.Errorf("%w: no submission %s", dataset.ErrNotFound, id)
}

// ChangeEvents: the fake's log of changes is empty; the clients do not
// read the Atom feed.
func (q querier) ChangeEvents(context.Context, dataset.EventFilter) ([]dataset.ChangeEvent, error) {
	return nil, nil
}

func (q querier) ExportResults(_ context.Context, req *pb.ExportResultsRequest, emit func([]*pb.PublicResult) error) error {
	start, end := req.Range.Start.AsTime(), req.Range.End.AsTime()
	if end.Sub(start) > 31*dataset.Day {
		return fmt.Errorf("%w: range: %.1f days is longer than the 31 days one export may cover; split it",
			dataset.ErrInvalid, end.Sub(start).Hours()/24)
	}
	rows := slices.DeleteFunc(ExportRows(start, end, q.s.ExportRows), func(r *pb.PublicResult) bool {
		return !match(req.Asn, r.Asn) || !match(req.Country, r.Country) || !match(req.Family, r.Family)
	})
	for sent := 0; sent < len(rows); {
		if q.s.BreakAfter > 0 && sent >= q.s.BreakAfter {
			return errBroken
		}
		n := min(len(rows), sent+max(q.s.Chunk, 1))
		if q.s.BreakAfter > 0 {
			n = min(n, q.s.BreakAfter)
		}
		if err := emit(rows[sent:n]); err != nil {
			return err
		}
		sent = n
	}
	return nil
}

// ExportHeader is the CSV header of an export, the columns of
// docs/dataset.md.
const ExportHeader = "result_id,measured_at,asn,country,prefix,family,port,verdict,failure,refmta_id,agent_id,refmta_charged,one_off,submission_id"

// ExportRows returns the rows an export of [start, end) has: n results of
// three agents of AS64500, each probing ports 25, 587 and 465 in turn,
// evenly spread, the last one a second before end.
func ExportRows(start, end time.Time, n int) []*pb.PublicResult {
	agents := [][2]string{
		{"agent-3f9c1a2b4d5e6f70", "192.0.2.0/24"},
		{"agent-8e21d0c4b7a95f13", "192.0.2.0/24"},
		{"agent-c05d7e9a1b2f3468", "198.51.100.0/24"},
	}
	var out []*pb.PublicResult
	step := end.Sub(start) / time.Duration(max(n, 1))
	for i := range n {
		at := start.Add(time.Duration(i+1)*step - time.Second)
		var id [16]byte // a UUIDv7 of at, its random bits i
		binary.BigEndian.PutUint64(id[:], uint64(at.UnixMilli())<<16|0x7000)
		binary.BigEndian.PutUint64(id[8:], 0x8000_0000_0000_0000|uint64(i))
		port, verdict, failure := []uint32{25, 587, 465}[i%3], open, ""
		if port == 25 {
			verdict, failure = timeout, "timeout"
		}
		agent := agents[i/3%len(agents)]
		out = append(out, &pb.PublicResult{ResultId: uuidv7.Format(id), MeasuredAt: timestamppb.New(at), Asn: 64500, Country: "JP",
			Prefix: agent[1], Family: v4, Port: port, Verdict: verdict, Failure: failure, RefmtaId: "refmta-51a7c3e9d2b40f86", AgentId: agent[0]})
	}
	return out
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func change(asn uint32, cc string, family pb.AddressFamily, from, to pb.PolicyClass, on string) *pb.PolicyChange {
	return &pb.PolicyChange{Asn: asn, Country: cc, Family: family, FromClass: from, ToClass: to, ChangedAt: timestamppb.New(day(on))}
}

// changes are the policy changes of all time, newest first.
var changes = []*pb.PolicyChange{
	change(64511, "DE", v4, classOpen, classMixed, "2026-03-04"),
	change(64500, "JP", v6, classMixed, classOpen, "2026-02-27"),
	change(64500, "JP", v4, classMixed, classOP25B, "2026-02-23"),
	change(64502, "JP", v4, classOP25B, classAll, "2026-02-19"),
	change(64500, "JP", v4, classOpen, classMixed, "2026-02-16"),
}

// Timeline returns the days with data of an ASN and family in window w:
// from the day its agents started (2026-02-27 for AS64501, 2026-02-11 for
// the others) to today, but for one day in eleven, the first two with too
// few prefixes, each of the class its changes gave it.
func Timeline(asn uint32, family pb.AddressFamily, w *pb.TimeRange) []*pb.TimelinePoint {
	first := day("2026-02-11")
	if asn == 64501 {
		first = day("2026-02-27")
	}
	var base pb.PolicyClass // the class before the first change
	for _, a := range Summaries(w) {
		if a.Asn == asn && a.Family == family {
			base = a.PolicyClass
		}
	}
	var mine []*pb.PolicyChange // oldest first
	for _, c := range slices.Backward(changes) {
		if c.Asn == asn && c.Family == family {
			mine = append(mine, c)
		}
	}
	if len(mine) > 0 {
		base = mine[0].FromClass
	}
	var out []*pb.TimelinePoint
	from, end := dataset.Today(w.Start.AsTime()), w.End.AsTime()
	if from.Before(first) {
		from = first
	}
	if tomorrow := dataset.Today(Now).Add(dataset.Day); tomorrow.Before(end) {
		end = tomorrow
	}
	for d := from; d.Before(end); d = d.Add(dataset.Day) {
		class := base
		for _, c := range mine {
			if !c.ChangedAt.AsTime().After(d) {
				class = c.ToClass
			}
		}
		switch i := int(d.Sub(first) / dataset.Day); {
		case i%11 == 7:
			continue
		case i < 2:
			class = classFew
		}
		out = append(out, &pb.TimelinePoint{Day: timestamppb.New(d), Family: family, PolicyClass: class})
	}
	return out
}

// Summaries returns the per-ASN summaries of window w, by ASN and family.
func Summaries(w *pb.TimeRange) []*pb.ASNSummary {
	sum := func(asn uint32, name, cc string, family pb.AddressFamily, class pb.PolicyClass, agents, prefixes uint64, ports ...*pb.PortStats) *pb.ASNSummary {
		return &pb.ASNSummary{Asn: asn, Name: name, Country: cc, Family: family, PolicyClass: class, Agents: agents,
			Prefixes: prefixes, Ports: ports, Window: w}
	}
	return []*pb.ASNSummary{
		sum(64500, "Example Broadband", "JP", v4, classOP25B, 131, 44,
			port(25, 120, 44, 38211, timeout, 37, reset, 3, open, 4),
			port(587, 118, 43, 37102, open, 42, timeout, 1),
			port(465, 118, 43, 37020, open, 43)),
		sum(64500, "Example Broadband", "JP", v6, classOpen, 19, 8,
			port(25, 19, 8, 5120, open, 7, timeout, 1),
			port(587, 19, 8, 5101, open, 8),
			port(465, 19, 8, 5099, open, 8)),
		sum(64501, "Sakura Mobile Networks Corporation", "JP", v4, classInt, 52, 17,
			port(25, 52, 17, 14880, icpt, 16, timeout, 1),
			port(587, 50, 17, 14301, open, 17)),
		sum(64502, "Kita Cable TV", "JP", v4, classAll, 28, 9,
			port(25, 28, 9, 8001, timeout, 9),
			port(587, 28, 9, 7990, timeout, 8, open, 1),
			port(465, 28, 9, 7985, timeout, 9)),
		sum(64510, "Fibre Nord", "DE", v4, classOpen, 40, 31,
			port(25, 40, 31, 11000, open, 30, reset, 1),
			port(587, 40, 31, 10990, open, 31),
			port(465, 40, 31, 10985, open, 31)),
		sum(64511, "Rheinland Kommunal Netz GmbH & Co. KG", "DE", v4, classMixed, 15, 12,
			port(25, 15, 12, 4400, open, 7, timeout, 5),
			port(587, 15, 12, 4398, open, 12)),
		sum(64512, "Tiny ISP", "DE", v4, classFew, 2, 2,
			port(25, 2, 2, 310, timeout, 2)),
	}
}

// port returns the stats of a port from the prefix count of each verdict
// (pairs of pb.Verdict and int), with Wilson intervals.
func port(port uint32, agents, prefixes, results uint64, counts ...any) *pb.PortStats {
	ps := &pb.PortStats{Port: port, Agents: agents, Prefixes: prefixes, Results: results}
	for i := 0; i < len(counts); i += 2 {
		k := float64(counts[i+1].(int))
		lo, hi := shares.Wilson(k, float64(prefixes))
		ps.Shares = append(ps.Shares, &pb.Share{Verdict: counts[i].(pb.Verdict), Count: k, Share: k / float64(prefixes),
			WilsonLow: lo, WilsonHigh: hi})
	}
	return ps
}
