package dataset

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/internal/shares"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// span is a request's window resolved: precomputed rolling window rows
// (days > 0, ending with asOf) or a custom range derived on request.
type span struct {
	start, end time.Time
	days       int
	asOf       time.Time
}

func (s span) timeRange() *pb.TimeRange {
	return &pb.TimeRange{Start: timestamppb.New(s.start), End: timestamppb.New(s.end)}
}

// asOf is the day the precomputed windows end on (today before the first
// refresh of the windows).
func (d *Dataset) asOf(ctx context.Context) (time.Time, error) {
	var asOf *time.Time
	if err := d.read.QueryRow(ctx, "SELECT as_of FROM agg_state").Scan(&asOf); err != nil {
		return time.Time{}, fmt.Errorf("dataset: state: %w", err)
	}
	if asOf == nil {
		return Today(d.now()), nil
	}
	return *asOf, nil
}

// span resolves a request's window. No window is the default rolling
// window as of the last refresh; a window is widened to whole UTC days.
func (d *Dataset) span(ctx context.Context, tr *pb.TimeRange) (span, error) {
	asOf, err := d.asOf(ctx)
	if err != nil {
		return span{}, err
	}
	end := asOf.Add(Day)
	if tr == nil {
		return span{start: end.Add(-time.Duration(d.cfg.DefaultWindow) * Day), end: end, days: d.cfg.DefaultWindow, asOf: asOf}, nil
	}
	if !tr.GetStart().IsValid() || !tr.GetEnd().IsValid() {
		return span{}, invalid("window: both start and end are required")
	}
	s := span{start: Today(tr.GetStart().AsTime()), end: tr.GetEnd().AsTime().UTC(), asOf: asOf}
	if !s.end.Equal(Today(s.end)) {
		s.end = Today(s.end).Add(Day)
	}
	n := int(s.end.Sub(s.start) / Day)
	switch {
	case n < 1:
		return span{}, invalid("window: the end must come after the start")
	case n > d.cfg.MaxWindowDays:
		return span{}, invalid("window: %d days is longer than the %d this server allows", n, d.cfg.MaxWindowDays)
	}
	if slices.Contains(d.cfg.Windows, n) && s.end.Equal(end) {
		s.days = n
	}
	return s, nil
}

// filter selects states.
type filter struct {
	asn     uint32
	family  int16 // 0: both
	country string
	class   int16
	after   [2]int64 // keyset: (asn, family) strictly after this
}

// state is derived plus what as_names knows of the ASN.
type state struct {
	*derived
	name, country string
}

// states returns the states of one span that pass f, in (asn, family)
// order, at most limit (0: all), with their ports when ports is set.
func (d *Dataset) states(ctx context.Context, sp span, f filter, limit int, ports bool) ([]state, error) {
	if sp.days == 0 {
		return d.statesDerived(ctx, sp, f, limit)
	}
	sql := `SELECT c.asn, c.family, c.class, c.blocked25, c.agents, c.prefixes, coalesce(n.name, ''), coalesce(n.country, '')
		FROM agg_class c LEFT JOIN as_names n ON n.asn = c.asn
		WHERE c.window_days = $1 AND c.day = $2 AND ($3::bigint = 0 OR c.asn = $3) AND ($4 = 0 OR c.family = $4)
			AND ($5 = '' OR n.country = $5) AND ($6 = 0 OR c.class = $6) AND (c.asn, c.family) > ($7, $8)
		ORDER BY c.asn, c.family`
	if limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := d.read.Query(ctx, sql, int16(sp.days), sp.asOf, int64(f.asn), f.family, f.country, f.class, f.after[0], int16(f.after[1]))
	if err != nil {
		return nil, fmt.Errorf("dataset: states: %w", err)
	}
	var out []state
	var s state
	var asn int64
	var r derived
	_, err = pgx.ForEachRow(rows, []any{&asn, &r.family, &r.class, &r.blocked25, &r.asnRow.agents, &r.asnRow.prefixes, &s.name, &s.country}, func() error {
		r.asn, r.day = uint32(asn), sp.asOf
		r.ports = map[uint32]*portRow{}
		c := r
		out = append(out, state{derived: &c, name: s.name, country: s.country})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: states: %w", err)
	}
	if !ports || len(out) == 0 {
		return out, nil
	}
	byKey := map[[2]int64]*derived{}
	asns := make([]int64, 0, len(out))
	for _, s := range out {
		byKey[[2]int64{int64(s.asn), int64(s.family)}] = s.derived
		asns = append(asns, int64(s.asn))
	}
	rows, err = d.read.Query(ctx, `SELECT asn, family, port, agents, prefixes, results, charged, p_open, p_blocked_timeout,
			p_blocked_reset, p_blocked_unreachable, p_intercepted, p_tampered
		FROM agg_port WHERE window_days = $1 AND day = $2 AND asn = ANY($3) AND port <> 0`, int16(sp.days), sp.asOf, asns)
	if err != nil {
		return nil, fmt.Errorf("dataset: ports: %w", err)
	}
	var p portRow
	var port int32
	_, err = pgx.ForEachRow(rows, []any{&asn, &p.family, &port, &p.agents, &p.prefixes, &p.results, &p.charged,
		&p.p[0], &p.p[1], &p.p[2], &p.p[3], &p.p[4], &p.p[5]}, func() error {
		if s := byKey[[2]int64{asn, int64(p.family)}]; s != nil {
			c := p
			c.asn, c.port = uint32(asn), uint32(port)
			s.ports[c.port] = &c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: ports: %w", err)
	}
	return out, nil
}

// statesDerived is states for a custom window, derived from the tallies.
func (d *Dataset) statesDerived(ctx context.Context, sp span, f filter, limit int) ([]state, error) {
	k := keys{}
	if f.asn != 0 {
		k = keys{asns: []int64{int64(f.asn), int64(f.asn)}, families: []int16{4, 6}}
	}
	all, err := d.derive(ctx, d.read, sp.start, sp.end, whole, k)
	if err != nil {
		return nil, err
	}
	asns := make([]int64, 0, len(all))
	for _, s := range all {
		asns = append(asns, int64(s.asn))
	}
	names, err := d.names(ctx, asns)
	if err != nil {
		return nil, err
	}
	var out []state
	for _, s := range all {
		n := names[s.asn]
		switch {
		case f.family != 0 && s.family != f.family, f.class != 0 && s.class != f.class,
			f.country != "" && n[1] != f.country,
			int64(s.asn) < f.after[0] || int64(s.asn) == f.after[0] && int64(s.family) <= f.after[1]:
			continue
		}
		s.day = sp.end.Add(-Day)
		out = append(out, state{derived: s, name: n[0], country: n[1]})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// names returns the name and country of asns.
func (d *Dataset) names(ctx context.Context, asns []int64) (map[uint32][2]string, error) {
	rows, err := d.read.Query(ctx, "SELECT asn, name, country FROM as_names WHERE asn = ANY($1)", asns)
	if err != nil {
		return nil, fmt.Errorf("dataset: names: %w", err)
	}
	out := map[uint32][2]string{}
	var asn int64
	var name, country string
	_, err = pgx.ForEachRow(rows, []any{&asn, &name, &country}, func() error {
		out[uint32(asn)] = [2]string{name, country}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: names: %w", err)
	}
	return out, nil
}

// portStats is one port as published, with Wilson intervals.
func portStats(r *portRow) *pb.PortStats {
	ps := &pb.PortStats{Port: r.port, Agents: uint64(r.agents), Prefixes: uint64(r.prefixes), Results: uint64(r.results),
		RefmtaCharged: uint64(r.charged)}
	for i, v := range conclusive {
		sh := &pb.Share{Verdict: v, Count: float64(r.p[i])}
		if r.prefixes > 0 {
			sh.Share = float64(r.p[i]) / float64(r.prefixes)
		}
		sh.WilsonLow, sh.WilsonHigh = shares.Wilson(float64(r.p[i]), float64(r.prefixes))
		ps.Shares = append(ps.Shares, sh)
	}
	return ps
}

func sortedPorts(m map[uint32]*portRow) []*pb.PortStats {
	var out []*pb.PortStats
	for _, r := range m {
		out = append(out, portStats(r))
	}
	slices.SortFunc(out, func(a, b *pb.PortStats) int { return int(a.GetPort()) - int(b.GetPort()) })
	return out
}

func (s state) summary(sp span) *pb.ASNSummary {
	return &pb.ASNSummary{
		Asn: s.asn, Name: s.name, Country: s.country, Family: familyPB(s.family),
		PolicyClass: pb.PolicyClass(s.class), Ports: sortedPorts(s.ports), Window: sp.timeRange(),
		Agents: uint64(s.asnRow.agents), Prefixes: uint64(s.asnRow.prefixes),
	}
}

func familyPB(f int16) pb.AddressFamily {
	if f == 6 {
		return pb.AddressFamily_ADDRESS_FAMILY_IPV6
	}
	return pb.AddressFamily_ADDRESS_FAMILY_IPV4
}

func familyDB(f pb.AddressFamily) (int16, error) {
	switch f {
	case pb.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED:
		return 0, nil
	case pb.AddressFamily_ADDRESS_FAMILY_IPV4:
		return 4, nil
	case pb.AddressFamily_ADDRESS_FAMILY_IPV6:
		return 6, nil
	}
	return 0, invalid("family %d is not one we know", f)
}

func classDB(c pb.PolicyClass) (int16, error) {
	if _, ok := pb.PolicyClass_name[int32(c)]; !ok {
		return 0, invalid("class %d is not one we know", c)
	}
	return int16(c), nil
}

// ParseCountry reads an ISO 3166-1 alpha-2 code in any case; "" is any.
func ParseCountry(c string) (string, error) {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c != "" && (len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z') {
		return "", invalid("country %s: want an ISO 3166-1 alpha-2 code such as JP", Quote(c))
	}
	return c, nil
}

func (d *Dataset) pageSize(n uint32) (int, error) {
	switch {
	case n == 0:
		return d.cfg.PageSize, nil
	case int64(n) > int64(d.cfg.MaxPageSize):
		return 0, invalid("page_size %d: at most %d", n, d.cfg.MaxPageSize)
	}
	return int(n), nil
}

func encodeToken(parts ...any) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(parts...)))
}

func decodeToken(tok string, format string, into ...any) error {
	if tok == "" {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		_, err = fmt.Sscanf(string(raw), format, into...)
	}
	if err != nil {
		return invalid("page_token %s is not one this server gave", Quote(tok))
	}
	return nil
}

// ListASNs lists the ASNs' summaries in a window, in (asn, family) order.
func (d *Dataset) ListASNs(ctx context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	var f filter
	var err error
	if f.family, err = familyDB(req.GetFamily()); err != nil {
		return nil, err
	}
	if f.class, err = classDB(req.GetPolicyClass()); err != nil {
		return nil, err
	}
	if f.country, err = ParseCountry(req.GetCountry()); err != nil {
		return nil, err
	}
	if err := decodeToken(req.GetPageToken(), "%d %d", &f.after[0], &f.after[1]); err != nil {
		return nil, err
	}
	sp, err := d.span(ctx, req.GetWindow())
	if err != nil {
		return nil, err
	}
	size, err := d.pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	states, err := d.states(ctx, sp, f, size+1, true)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListASNsResponse{}
	for i, s := range states {
		if i == size {
			last := states[i-1]
			resp.NextPageToken = encodeToken(int64(last.asn), " ", int64(last.family))
			break
		}
		resp.Asns = append(resp.Asns, s.summary(sp))
	}
	return resp, nil
}

// GetASN returns one ASN: its summaries in the window, its timeline over
// the window's days, its policy changes and the evidence of interception.
func (d *Dataset) GetASN(ctx context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	if req.GetAsn() == 0 {
		return nil, invalid("asn is required")
	}
	family, err := familyDB(req.GetFamily())
	if err != nil {
		return nil, err
	}
	sp, err := d.span(ctx, req.GetWindow())
	if err != nil {
		return nil, err
	}
	states, err := d.states(ctx, sp, filter{asn: req.GetAsn(), family: family}, 0, true)
	if err != nil {
		return nil, err
	}
	resp := &pb.GetASNResponse{}
	for _, s := range states {
		resp.Summaries = append(resp.Summaries, s.summary(sp))
	}
	if resp.Timeline, err = d.timeline(ctx, req.GetAsn(), family, sp); err != nil {
		return nil, err
	}
	if len(resp.Summaries) == 0 && len(resp.Timeline) == 0 {
		var known bool
		if err := d.read.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM agg_class WHERE asn = $1)", int64(req.GetAsn())).Scan(&known); err != nil {
			return nil, fmt.Errorf("dataset: asn: %w", err)
		}
		if !known {
			return nil, fmt.Errorf("%w: no measurements from AS%d", ErrNotFound, req.GetAsn())
		}
	}
	ch, _, err := d.changes(ctx, filter{asn: req.GetAsn(), family: family}, nil, "", 100)
	if err != nil {
		return nil, err
	}
	resp.Changes = ch
	rows, err := d.read.Query(ctx, `SELECT family, port, verdict, text, first_seen, last_seen, results FROM agg_evidence
		WHERE asn = $1 AND ($2 = 0 OR family = $2) ORDER BY last_seen DESC, text LIMIT 20`, int64(req.GetAsn()), family)
	if err != nil {
		return nil, fmt.Errorf("dataset: evidence: %w", err)
	}
	var e struct {
		family      int16
		port        int32
		verdict     int16
		text        string
		first, last time.Time
		results     int64
	}
	_, err = pgx.ForEachRow(rows, []any{&e.family, &e.port, &e.verdict, &e.text, &e.first, &e.last, &e.results}, func() error {
		resp.Evidence = append(resp.Evidence, e.text)
		resp.EvidenceItems = append(resp.EvidenceItems, &pb.EvidenceItem{Family: familyPB(e.family), Port: uint32(e.port),
			Verdict: pb.Verdict(e.verdict), Text: e.text, FirstSeen: timestamppb.New(e.first), LastSeen: timestamppb.New(e.last),
			Results: uint64(e.results)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: evidence: %w", err)
	}
	return resp, nil
}

// timeline returns the daily points of one ASN in the span's days.
func (d *Dataset) timeline(ctx context.Context, asn uint32, family int16, sp span) ([]*pb.TimelinePoint, error) {
	rows, err := d.read.Query(ctx, `SELECT c.day, c.family, c.class, p.port, p.agents, p.prefixes, p.results, p.charged, p.p_open,
			p.p_blocked_timeout, p.p_blocked_reset, p.p_blocked_unreachable, p.p_intercepted, p.p_tampered
		FROM agg_class c JOIN agg_port p USING (window_days, asn, family, day)
		WHERE c.window_days = 0 AND c.asn = $1 AND ($2 = 0 OR c.family = $2) AND c.day >= $3 AND c.day < $4
		ORDER BY c.family, c.day, p.port`, int64(asn), family, sp.start, sp.end)
	if err != nil {
		return nil, fmt.Errorf("dataset: timeline: %w", err)
	}
	var out []*pb.TimelinePoint
	var day time.Time
	var class int16
	var r portRow
	var port int32
	_, err = pgx.ForEachRow(rows, []any{&day, &r.family, &class, &port, &r.agents, &r.prefixes, &r.results, &r.charged,
		&r.p[0], &r.p[1], &r.p[2], &r.p[3], &r.p[4], &r.p[5]}, func() error {
		last := len(out) - 1
		if last < 0 || !out[last].GetDay().AsTime().Equal(day) || out[last].GetFamily() != familyPB(r.family) {
			out = append(out, &pb.TimelinePoint{Day: timestamppb.New(day), PolicyClass: pb.PolicyClass(class), Family: familyPB(r.family)})
			last++
		}
		if port == 0 {
			out[last].Agents, out[last].Prefixes = uint64(r.agents), uint64(r.prefixes)
			return nil
		}
		r.port = uint32(port)
		out[last].Ports = append(out[last].Ports, portStats(&r))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: timeline: %w", err)
	}
	return out, nil
}

// changes lists policy changes newest first, keyset-paged after a token.
func (d *Dataset) changes(ctx context.Context, f filter, sp *span, token string, limit int) ([]*pb.PolicyChange, string, error) {
	var after struct {
		day    string
		asn    int64
		family int16
	}
	after.day = "9999-12-31"
	if err := decodeToken(token, "%s %d %d", &after.day, &after.asn, &after.family); err != nil {
		return nil, "", err
	}
	afterDay, err := time.Parse(time.DateOnly, after.day)
	if err != nil {
		return nil, "", invalid("page_token %s is not one this server gave", Quote(token))
	}
	start, end := time.Time{}, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	if sp != nil {
		start, end = sp.start, sp.end
	}
	rows, err := d.read.Query(ctx, `SELECT p.asn, p.family, p.day, p.from_class, p.to_class, coalesce(n.country, '')
		FROM policy_changes p LEFT JOIN as_names n ON n.asn = p.asn
		WHERE ($1::bigint = 0 OR p.asn = $1) AND ($2 = 0 OR p.family = $2) AND ($3 = '' OR n.country = $3)
			AND p.day >= $4 AND p.day < $5 AND (p.day < $6 OR p.day = $6 AND (p.asn, p.family) > ($7, $8))
		ORDER BY p.day DESC, p.asn, p.family LIMIT $9`,
		int64(f.asn), f.family, f.country, start, end, afterDay, after.asn, after.family, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("dataset: changes: %w", err)
	}
	var out []*pb.PolicyChange
	var asn int64
	var family, from, to int16
	var day time.Time
	var cc, next string
	_, err = pgx.ForEachRow(rows, []any{&asn, &family, &day, &from, &to, &cc}, func() error {
		if len(out) == limit {
			last := out[limit-1]
			next = encodeToken(last.GetChangedAt().AsTime().Format(time.DateOnly), " ", int64(last.GetAsn()), " ", family4or6(last.GetFamily()))
			return nil
		}
		out = append(out, &pb.PolicyChange{Asn: uint32(asn), Family: familyPB(family), FromClass: pb.PolicyClass(from),
			ToClass: pb.PolicyClass(to), ChangedAt: timestamppb.New(day), Country: cc})
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("dataset: changes: %w", err)
	}
	return out, next, nil
}

func family4or6(f pb.AddressFamily) int16 {
	if f == pb.AddressFamily_ADDRESS_FAMILY_IPV6 {
		return 6
	}
	return 4
}

// ListPolicyChanges lists class changes, newest first. No window is all
// time.
func (d *Dataset) ListPolicyChanges(ctx context.Context, req *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	var f filter
	var err error
	f.asn = req.GetAsn()
	if f.country, err = ParseCountry(req.GetCountry()); err != nil {
		return nil, err
	}
	var sp *span
	if req.GetWindow() != nil {
		s, err := d.span(ctx, req.GetWindow())
		if err != nil {
			return nil, err
		}
		sp = &s
	}
	size, err := d.pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	ch, next, err := d.changes(ctx, f, sp, req.GetPageToken(), size)
	if err != nil {
		return nil, err
	}
	return &pb.ListPolicyChangesResponse{Changes: ch, NextPageToken: next}, nil
}

// ListCountries rolls the ASNs' classes up per country and family.
func (d *Dataset) ListCountries(ctx context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	family, err := familyDB(req.GetFamily())
	if err != nil {
		return nil, err
	}
	sp, err := d.span(ctx, req.GetWindow())
	if err != nil {
		return nil, err
	}
	states, err := d.states(ctx, sp, filter{family: family}, 0, false)
	if err != nil {
		return nil, err
	}
	byKey := map[[2]string]*pb.CountrySummary{}
	var out []*pb.CountrySummary
	blocked := map[*pb.CountrySummary]int{}
	classified := map[*pb.CountrySummary]int{}
	for _, s := range states {
		k := [2]string{s.country, fmt.Sprint(s.family)}
		c := byKey[k]
		if c == nil {
			c = &pb.CountrySummary{Country: s.country, Family: familyPB(s.family), Classes: map[string]uint64{}}
			byKey[k] = c
			out = append(out, c)
		}
		c.Asns++
		c.Agents += uint64(s.asnRow.agents)
		c.Classes[ClassName(pb.PolicyClass(s.class))]++
		switch pb.PolicyClass(s.class) {
		case pb.PolicyClass_POLICY_CLASS_OP25B, pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED:
			blocked[c]++
			classified[c]++
		case pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA:
		default:
			classified[c]++
		}
	}
	for _, c := range out {
		if classified[c] > 0 {
			c.Op25BShare = float64(blocked[c]) / float64(classified[c])
		}
	}
	slices.SortFunc(out, func(a, b *pb.CountrySummary) int {
		if a.GetCountry() != b.GetCountry() {
			return strings.Compare(a.GetCountry(), b.GetCountry())
		}
		return int(a.GetFamily()) - int(b.GetFamily())
	})
	return &pb.ListCountriesResponse{Countries: out}, nil
}

// GetInfo describes the server and the freshness of the data, and says
// whether they are read from a replica, how far behind.
func (d *Dataset) GetInfo(ctx context.Context, _ *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	var refreshed, windows *time.Time
	if err := d.read.QueryRow(ctx, "SELECT refreshed_at, windows_at FROM agg_state").Scan(&refreshed, &windows); err != nil {
		return nil, fmt.Errorf("dataset: state: %w", err)
	}
	resp := &pb.GetInfoResponse{
		SoftwareVersion: d.cfg.SoftwareVersion, SchemaVersion: SchemaVersion, Licence: Licence,
		DefaultWindowDays: uint32(d.cfg.DefaultWindow), MaxExportDays: uint32(d.cfg.MaxExportDays),
		MaxWindowDays: uint32(d.cfg.MaxWindowDays),
	}
	if refreshed != nil {
		resp.RefreshedAt = timestamppb.New(*refreshed)
	}
	if windows != nil {
		resp.WindowsRefreshedAt = timestamppb.New(*windows)
	}
	for _, w := range d.cfg.Windows {
		resp.WindowDays = append(resp.WindowDays, uint32(w))
	}
	var err error
	if resp.ReferenceMtas, resp.ReferenceMtaWindow, err = d.RefMTAs(ctx); err != nil {
		return nil, err
	}
	rs, err := d.Replica(ctx)
	if err != nil {
		return nil, err
	}
	resp.ReadFromReplica = rs.Replica
	if rs.LagKnown {
		resp.ReplicaLag = durationpb.New(rs.Lag)
	}
	return resp, nil
}
