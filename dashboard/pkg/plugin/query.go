package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	op25bv1 "github.com/op25b/observatory/dashboard/pkg/internal/op25bv1"
	"github.com/op25b/observatory/dashboard/pkg/internal/shares"
	"github.com/op25b/observatory/dashboard/pkg/internal/verdict"
)

const (
	// maxRows bounds a frame: the results' limit and the pages read.
	maxRows      = 10000
	defaultLimit = 1000
	pageSize     = 1000
	day          = 24 * time.Hour
)

// handler answers one query type.
type handler func(*Datasource, context.Context, params) (data.Frames, error)

// handlers are the query types the front end's query editor offers.
var handlers = map[string]handler{
	"asns":      (*Datasource).asns,
	"timeline":  (*Datasource).timeline,
	"countries": (*Datasource).countries,
	"peers":     (*Datasource).peers,
	"changes":   (*Datasource).changes,
	"prefixes":  (*Datasource).prefixes,
	"results":   (*Datasource).results,
	"live":      (*Datasource).live,
}

// queryModel is a query as the front end sends it.
type queryModel struct {
	QueryType   string `json:"queryType"`
	ASN         asn    `json:"asn"`
	Country     string `json:"country"`
	Family      string `json:"family"`
	PolicyClass string `json:"policyClass"`
	Port        uint32 `json:"port"`
	Limit       int    `json:"limit"`
	// Verdicts filter a live query's results (DESIGN.md names); none: all.
	Verdicts []string `json:"verdicts"`
}

// asn reads 64500, "64500" or "AS64500": dashboard variables arrive as
// strings.
type asn uint32

func (a *asn) UnmarshalJSON(b []byte) error {
	s := strings.ToUpper(strings.Trim(string(b), `"`))
	if s == "" || s == "NULL" {
		*a = 0
		return nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "AS"), 10, 32)
	if err != nil {
		return fmt.Errorf("asn %s: want a number such as 64500 or AS64500", b)
	}
	*a = asn(n)
	return nil
}

// params are a checked query in the collector's terms.
type params struct {
	asn      uint32
	country  string
	family   op25bv1.AddressFamily
	class    op25bv1.PolicyClass
	port     uint32
	limit    int
	verdicts []op25bv1.Verdict
	tr       backend.TimeRange
}

// QueryData answers each query on its own: a query that fails gets an
// error in its response, never a failed request.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, dq := range req.Queries {
		resp.Responses[dq.RefID] = d.query(ctx, dq)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	if d.err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, d.err.Error())
	}
	q, h, err := parse(dq)
	var frames data.Frames
	if err == nil {
		frames, err = h(d, ctx, q)
	}
	if err != nil {
		return d.errorResponse(err)
	}
	for _, f := range frames {
		f.RefID = dq.RefID
	}
	return backend.DataResponse{Frames: frames}
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

// errorResponse turns a failure, the collector's or the query's, into a
// per-query error that says what to change.
func (d *Datasource) errorResponse(err error) backend.DataResponse {
	s := status.Convert(err)
	code, msg := backend.StatusBadGateway, s.Message()
	switch s.Code() {
	case codes.InvalidArgument:
		code = backend.StatusBadRequest
	case codes.NotFound:
		code = backend.StatusNotFound
	case codes.ResourceExhausted:
		code = backend.StatusTooManyRequests
	case codes.DeadlineExceeded:
		code = backend.StatusTimeout
	case codes.Unavailable, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
		msg = d.unreachable(err)
	}
	return backend.ErrDataResponseWithSource(code, backend.ErrorSourceDownstream, msg)
}

// parse checks a query and finds its handler.
func parse(dq backend.DataQuery) (params, handler, error) {
	var m queryModel
	if err := json.Unmarshal(dq.JSON, &m); err != nil {
		return params{}, nil, invalid("query: %v", err)
	}
	m.QueryType = cmp.Or(m.QueryType, dq.QueryType)
	h, ok := handlers[m.QueryType]
	if !ok {
		return params{}, nil, invalid("query type %q: want one of %s", m.QueryType, strings.Join(slices.Sorted(maps.Keys(handlers)), ", "))
	}
	q := params{asn: uint32(m.ASN), country: strings.ToUpper(strings.TrimSpace(m.Country)),
		port: m.Port, limit: cmp.Or(m.Limit, defaultLimit), tr: dq.TimeRange}
	if q.port == 0 && m.QueryType != "live" { // a live panel follows every port unless told
		q.port = 25
	}
	switch strings.ToLower(m.Family) {
	case "":
	case "ipv4":
		q.family = op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4
	case "ipv6":
		q.family = op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6
	default:
		return params{}, nil, invalid("family %q: want ipv4, ipv6, or none for both", m.Family)
	}
	if m.PolicyClass != "" {
		v := op25bv1.PolicyClass_value["POLICY_CLASS_"+strings.ToUpper(m.PolicyClass)]
		if v == 0 {
			var names []string
			for _, c := range classes {
				names = append(names, className(c))
			}
			return params{}, nil, invalid("policy class %q: want one of %s", m.PolicyClass, strings.Join(names, ", "))
		}
		q.class = op25bv1.PolicyClass(v)
	}
	for _, s := range m.Verdicts {
		v, err := verdict.Parse(strings.ToUpper(strings.TrimSpace(s)))
		if err != nil {
			return params{}, nil, invalid("%v", err)
		}
		q.verdicts = append(q.verdicts, op25bv1.Verdict(v))
	}
	if q.port != 0 && q.port != 25 && q.port != 587 && q.port != 465 {
		return params{}, nil, invalid("port %d: want 25, 587 or 465", q.port)
	}
	if q.limit < 1 || q.limit > maxRows {
		return params{}, nil, invalid("limit %d: want 1 to %d", q.limit, maxRows)
	}
	return q, h, nil
}

// window turns the panel's time range into whole UTC days, as the
// collector counts them, of the same length and ending with the day that
// holds the range's end: "last 7 days" is the collector's precomputed
// 7-day window.
func window(tr backend.TimeRange) *op25bv1.TimeRange {
	end := tr.To.UTC().Truncate(day)
	if end.Before(tr.To) {
		end = end.Add(day)
	}
	days := max((tr.To.Sub(tr.From)+day-1)/day, 1)
	return &op25bv1.TimeRange{Start: timestamppb.New(end.Add(-days * day)), End: timestamppb.New(end)}
}

// asns is the adoption table: one row per ASN and family in the window.
func (d *Datasource) asns(ctx context.Context, q params) (data.Frames, error) {
	req := &op25bv1.ListASNsRequest{Country: q.country, PolicyClass: q.class, Family: q.family, Window: window(q.tr), PageSize: pageSize}
	f := table("asns", executed("ListASNs", req.Window, q),
		field("asn", "ASN", []uint32{}),
		field("name", "Name", []string{}),
		field("country", "Country", []string{}),
		field("family", "Family", []string{}),
		field("class", "Class", []string{}),
		field("agents", "Agents", []uint64{}),
		field("prefixes", "Prefixes", []uint64{}),
		share("port25_blocked_share", "Port 25 blocked"),
		share("port25_blocked_low", "Port 25 blocked, 95% low"),
		share("port25_blocked_high", "Port 25 blocked, 95% high"),
		share("port587_open_share", "Port 587 open"),
		share("port465_open_share", "Port 465 open"),
	)
	for {
		resp, err := d.client.ListASNs(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, s := range resp.GetAsns() {
			if truncated(f, maxRows, "ASNs") {
				return data.Frames{f}, nil
			}
			blocked, low, high := shareOf(port(s.GetPorts(), 25), blockedVerdicts...)
			open587, _, _ := shareOf(port(s.GetPorts(), 587), op25bv1.Verdict_VERDICT_OPEN)
			open465, _, _ := shareOf(port(s.GetPorts(), 465), op25bv1.Verdict_VERDICT_OPEN)
			f.AppendRow(s.GetAsn(), s.GetName(), s.GetCountry(), familyName(s.GetFamily()), className(s.GetPolicyClass()),
				s.GetAgents(), s.GetPrefixes(), blocked, low, high, open587, open465)
		}
		if resp.GetNextPageToken() == "" {
			return data.Frames{f}, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// timeline is one time series per family of an ASN's days: the blocked
// share of the chosen port (the value alerts use), the class, agents and
// prefixes.
func (d *Datasource) timeline(ctx context.Context, q params) (data.Frames, error) {
	if q.asn == 0 {
		return nil, invalid("the timeline needs an ASN")
	}
	req := &op25bv1.GetASNRequest{Asn: q.asn, Family: q.family, Window: window(q.tr)}
	resp, err := d.client.GetASN(ctx, req)
	if err != nil {
		return nil, err
	}
	meta := &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1},
		PreferredVisualization: data.VisTypeGraph, ExecutedQueryString: executed("GetASN", req.Window, q)}
	var frames data.Frames
	var f *data.Frame
	family := op25bv1.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED
	for _, p := range resp.GetTimeline() { // by family, then day
		if f == nil || p.GetFamily() != family {
			family = p.GetFamily()
			value := share("blocked_share", fmt.Sprintf("AS%d %s port %d blocked", q.asn, familyTitle(family), q.port))
			value.Labels = data.Labels{"asn": strconv.Itoa(int(q.asn)), "family": familyName(family), "port": strconv.Itoa(int(q.port))}
			times := data.NewField("time", nil, []time.Time{})
			times.Config = &data.FieldConfig{Interval: float64(day.Milliseconds())} // daily points: a gap is a day without data
			f = data.NewFrame("timeline", times, value,
				field("class", "Class", []string{}), field("agents", "Agents", []uint64{}), field("prefixes", "Prefixes", []uint64{}))
			f.Meta = meta
			frames = append(frames, f)
		}
		blocked, _, _ := shareOf(port(p.GetPorts(), q.port), blockedVerdicts...)
		f.AppendRow(p.GetDay().AsTime().UTC(), blocked, className(p.GetPolicyClass()), p.GetAgents(), p.GetPrefixes())
	}
	if len(frames) == 0 { // the dataplane's "no data"
		frames = data.Frames{data.NewFrame("timeline").SetMeta(meta)}
	}
	return frames, nil
}

// countries rolls the classes up per country (ISO 3166-1 alpha-2, which
// Geomap looks up) and family.
func (d *Datasource) countries(ctx context.Context, q params) (data.Frames, error) {
	req := &op25bv1.ListCountriesRequest{Family: q.family, Window: window(q.tr)}
	resp, err := d.client.ListCountries(ctx, req)
	if err != nil {
		return nil, err
	}
	op25b := share("op25b_share", "Blocking port 25")
	op25b.Config.Description = "share of the classified ASNs (all but INSUFFICIENT_DATA) that block port 25: OP25B or ALL_SMTP_BLOCKED"
	fields := []*data.Field{
		field("country", "Country", []string{}),
		field("family", "Family", []string{}),
		field("asns", "ASNs", []uint64{}),
		field("agents", "Agents", []uint64{}),
		op25b,
	}
	for _, c := range classes {
		fields = append(fields, field(strings.ToLower(className(c)), className(c)+" ASNs", []uint64{}))
	}
	f := table("countries", executed("ListCountries", req.Window, q), fields...)
	for _, c := range resp.GetCountries() {
		if q.country != "" && c.GetCountry() != q.country {
			continue
		}
		var blocking *float64 // null when no ASN is classified
		if c.GetAsns() > c.GetClasses()["INSUFFICIENT_DATA"] {
			blocking = &c.Op25BShare
		}
		row := []any{c.GetCountry(), familyName(c.GetFamily()), c.GetAsns(), c.GetAgents(), blocking}
		for _, cl := range classes {
			row = append(row, c.GetClasses()[className(cl)])
		}
		f.AppendRow(row...)
	}
	return data.Frames{f}, nil
}

// peers ranks an ASN among the ASNs of its country by blocked port-25
// share; the gaps it could close are the frame's notices.
func (d *Datasource) peers(ctx context.Context, q params) (data.Frames, error) {
	if q.asn == 0 {
		return nil, invalid("the peer comparison needs an ASN")
	}
	req := &op25bv1.GetPeersRequest{Asn: q.asn, Family: q.family, Window: window(q.tr)}
	resp, err := d.client.GetPeers(ctx, req)
	if err != nil {
		return nil, err
	}
	f := table("peers", executed("GetPeers", req.Window, q),
		field("rank", "Rank", []*uint32{}),
		field("asn", "ASN", []uint32{}),
		field("name", "Name", []string{}),
		field("class", "Class", []string{}),
		share("port25_blocked_share", "Port 25 blocked"),
		field("subject", "Subject", []bool{}),
	)
	ranked := resp.GetPeers()
	if len(ranked) == 0 { // no country known, so no ranking: the subject alone
		ranked = []*op25bv1.ASNSummary{resp.GetSubject()}
	}
	for i, s := range ranked {
		var rank *uint32
		if resp.GetRank() > 0 {
			rank = new(uint32(i + 1))
		}
		blocked, _, _ := shareOf(port(s.GetPorts(), 25), blockedVerdicts...)
		f.AppendRow(rank, s.GetAsn(), s.GetName(), className(s.GetPolicyClass()), blocked, s.GetAsn() == resp.GetSubject().GetAsn())
	}
	for _, g := range resp.GetGaps() {
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("%s (%s): %s", g.GetKind(), familyTitle(g.GetFamily()), g.GetDetail())})
	}
	return data.Frames{f}, nil
}

// prefixes lists the /24 and /48 prefixes of one ASN with their verdict on
// the query's port over the panel's days: which pools still let port 25
// out. Prefixes only, never an address.
func (d *Datasource) prefixes(ctx context.Context, q params) (data.Frames, error) {
	if q.asn == 0 {
		return nil, invalid("the prefixes query needs an ASN")
	}
	// No page size: the collector's default stays within its bound on
	// prefixes times days, whatever the window's length.
	req := &op25bv1.GetPrefixesRequest{Asn: q.asn, Family: q.family, Window: window(q.tr)}
	f := table("prefixes", executed("GetPrefixes", req.Window, q),
		field("prefix", "Prefix", []string{}),
		field("family", "Family", []string{}),
		field("port", "Port", []uint32{}),
		field("verdict", "Verdict", []string{}),
		field("agents", "Agents", []uint64{}),
		field("agreeing", "Agents with the verdict", []uint64{}),
		field("results", "Results", []uint64{}),
		field("first_seen", "First seen", []time.Time{}),
		field("last_seen", "Last seen", []time.Time{}),
	)
	f.Fields[4].Config.Description = "agents with a conclusive result on the port; the verdict is their majority"
	for {
		resp, err := d.client.GetPrefixes(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, p := range resp.GetPrefixes() {
			if truncated(f, maxRows, "prefixes") {
				return data.Frames{f}, nil
			}
			var pp *op25bv1.PrefixPort
			for _, x := range p.GetPorts() {
				if x.GetPort() == q.port {
					pp = x
				}
			}
			var agents, agreeing uint64
			for _, av := range pp.GetAgentVerdicts() {
				agents += av.GetAgents()
				if av.GetVerdict() == pp.GetVerdict() {
					agreeing = av.GetAgents()
				}
			}
			verdict := "" // no conclusive result on this port
			if pp.GetVerdict() != op25bv1.Verdict_VERDICT_UNSPECIFIED {
				verdict = strings.TrimPrefix(pp.GetVerdict().String(), "VERDICT_")
			}
			f.AppendRow(p.GetPrefix(), familyName(p.GetFamily()), q.port, verdict, agents, agreeing, pp.GetResults(),
				p.GetFirstSeen().AsTime().UTC(), p.GetLastSeen().AsTime().UTC())
		}
		if resp.GetNextPageToken() == "" {
			return data.Frames{f}, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// changes lists policy changes, newest first, with the time, text and tags
// Grafana's annotations read.
func (d *Datasource) changes(ctx context.Context, q params) (data.Frames, error) {
	req := &op25bv1.ListPolicyChangesRequest{Country: q.country, Asn: q.asn, Window: window(q.tr), PageSize: pageSize}
	f := table("changes", executed("ListPolicyChanges", req.Window, q),
		field("time", "Time", []time.Time{}),
		field("asn", "ASN", []uint32{}),
		field("family", "Family", []string{}),
		field("from", "From", []string{}),
		field("to", "To", []string{}),
		field("country", "Country", []string{}),
		field("text", "Change", []string{}),
		field("tags", "Tags", []string{}),
	)
	for {
		resp, err := d.client.ListPolicyChanges(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, c := range resp.GetChanges() {
			if truncated(f, maxRows, "changes") {
				return data.Frames{f}, nil
			}
			if q.family != op25bv1.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED && c.GetFamily() != q.family {
				continue
			}
			to := className(c.GetToClass())
			f.AppendRow(c.GetChangedAt().AsTime().UTC(), c.GetAsn(), familyName(c.GetFamily()), className(c.GetFromClass()), to, c.GetCountry(),
				fmt.Sprintf("AS%d %s turned to %s", c.GetAsn(), familyTitle(c.GetFamily()), to),
				fmt.Sprintf("AS%d,%s,%s", c.GetAsn(), familyName(c.GetFamily()), to))
		}
		if resp.GetNextPageToken() == "" {
			return data.Frames{f}, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// results streams the raw public results measured in the panel's time
// range (the collector bounds its length), at most the query's limit.
func (d *Datasource) results(ctx context.Context, q params) (data.Frames, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the export once the limit is reached
	req := &op25bv1.ExportResultsRequest{Range: &op25bv1.TimeRange{Start: timestamppb.New(q.tr.From), End: timestamppb.New(q.tr.To)},
		Asn: q.asn, Country: q.country, Family: q.family}
	stream, err := d.client.ExportResults(ctx, req)
	if err != nil {
		return nil, err
	}
	f := table("results", executed("ExportResults", req.Range, q),
		field("measured_at", "Measured at", []time.Time{}),
		field("result_id", "Result", []string{}),
		field("asn", "ASN", []uint32{}),
		field("country", "Country", []string{}),
		field("prefix", "Prefix", []string{}),
		field("family", "Family", []string{}),
		field("port", "Port", []uint32{}),
		field("verdict", "Verdict", []string{}),
		field("failure", "Failure", []string{}),
		field("refmta_id", "Reference MTA", []string{}),
		field("agent_id", "Agent", []string{}),
	)
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return data.Frames{f}, nil
		}
		if err != nil {
			return nil, err
		}
		for _, r := range resp.GetResults() {
			if truncated(f, q.limit, "results") {
				return data.Frames{f}, nil
			}
			f.AppendRow(r.GetMeasuredAt().AsTime().UTC(), r.GetResultId(), r.GetAsn(), r.GetCountry(), r.GetPrefix(),
				familyName(r.GetFamily()), r.GetPort(), strings.TrimPrefix(r.GetVerdict().String(), "VERDICT_"), r.GetFailure(),
				r.GetRefmtaId(), r.GetAgentId())
		}
	}
}

// truncated reports whether f holds limit rows, and then says so in its
// notices.
func truncated(f *data.Frame, limit int, what string) bool {
	if f.Rows() < limit {
		return false
	}
	f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityWarning,
		Text: fmt.Sprintf("only the first %d %s are shown: narrow the time range or the filters", limit, what)})
	return true
}

func table(name, executed string, fields ...*data.Field) *data.Frame {
	return data.NewFrame(name, fields...).SetMeta(&data.FrameMeta{Type: data.FrameTypeTable,
		PreferredVisualization: data.VisTypeTable, ExecutedQueryString: executed})
}

func field(name, display string, values any) *data.Field {
	f := data.NewField(name, nil, values)
	f.Config = &data.FieldConfig{DisplayNameFromDS: display}
	return f
}

// share is a field of shares of prefixes, null where no prefix was
// conclusive.
func share(name, display string) *data.Field {
	f := field(name, display, []*float64{})
	f.Config.Unit = "percentunit"
	f.Config.SetMin(0).SetMax(1)
	return f
}

// executed says, for the query inspector, what was asked of the collector
// and over which UTC days.
func executed(method string, w *op25bv1.TimeRange, q params) string {
	s := fmt.Sprintf("%s %s/%s", method, w.GetStart().AsTime().UTC().Format(time.RFC3339), w.GetEnd().AsTime().UTC().Format(time.RFC3339))
	if q.asn != 0 {
		s += fmt.Sprintf(" asn=%d", q.asn)
	}
	if q.country != "" {
		s += " country=" + q.country
	}
	if q.family != op25bv1.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED {
		s += " family=" + familyName(q.family)
	}
	if q.class != op25bv1.PolicyClass_POLICY_CLASS_UNSPECIFIED {
		s += " class=" + className(q.class)
	}
	return s
}

var blockedVerdicts = []op25bv1.Verdict{op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, op25bv1.Verdict_VERDICT_BLOCKED_RESET, op25bv1.Verdict_VERDICT_BLOCKED_UNREACHABLE}

func port(ports []*op25bv1.PortStats, n uint32) *op25bv1.PortStats {
	for _, p := range ports {
		if p.GetPort() == n {
			return p
		}
	}
	return nil
}

// shareOf returns the share of p's conclusive prefixes whose verdict is one
// of verdicts, with its Wilson 95% interval (docs/dataset.md), rounded to
// 6 decimals as the docs publish shares, so that frames carry no float
// noise (5.6e-17 for 0); all nil when p has no conclusive prefix.
func shareOf(p *op25bv1.PortStats, verdicts ...op25bv1.Verdict) (share, low, high *float64) {
	s := shares.Of(p, verdicts...)
	if !s.OK {
		return nil, nil, nil
	}
	round := func(x float64) *float64 { return new(math.Round(x*1e6) / 1e6) }
	return round(s.Value), round(s.Low), round(s.High)
}

// classes are the policy classes in enum order.
var classes = func() []op25bv1.PolicyClass {
	var out []op25bv1.PolicyClass
	for v := int32(1); op25bv1.PolicyClass_name[v] != ""; v++ {
		out = append(out, op25bv1.PolicyClass(v))
	}
	return out
}()

// className is the short name of c, such as OP25B.
func className(c op25bv1.PolicyClass) string { return strings.TrimPrefix(c.String(), "POLICY_CLASS_") }

// familyName is "ipv4" or "ipv6", as queries and exports write it.
func familyName(f op25bv1.AddressFamily) string {
	return strings.ToLower(strings.TrimPrefix(f.String(), "ADDRESS_FAMILY_"))
}

// familyTitle is "IPv4" or "IPv6".
func familyTitle(f op25bv1.AddressFamily) string {
	return strings.Replace(strings.ToUpper(familyName(f)), "IPV", "IPv", 1)
}
