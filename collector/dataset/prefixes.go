package dataset

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// MaxPrefixDays bounds a page of GetPrefixes: its prefixes times the
// window's days, each of which may carry a day of verdicts. A 30-day window
// pages at most 3,333 prefixes, a 366-day one 273.
const MaxPrefixDays = 100_000

// prefixKey is a prefix of one family, as a page token names it.
type prefixKey struct {
	family int16
	prefix netip.Prefix
}

// GetPrefixes lists the /24 (IPv4) and /48 (IPv6) prefixes of one ASN with
// results in a window, in (family, prefix) order, keyset-paged: per port
// the prefix's verdict over the window and how many agents had each
// verdict, and its verdicts day by day. The verdicts are made as the
// shares' (deriveSQL): each agent's majority over its conclusive results,
// then the prefix's majority over its agents, ties to the lower verdict.
// There is no evidence threshold per prefix; the counts of agents and
// results come with each verdict instead.
func (d *Dataset) GetPrefixes(ctx context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	if req.GetAsn() == 0 {
		return nil, invalid("asn is required")
	}
	family, err := familyDB(req.GetFamily())
	if err != nil {
		return nil, err
	}
	after := prefixKey{prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	if tok := req.GetPageToken(); tok != "" {
		var s string
		err := decodeToken(tok, "%d %s", &after.family, &s)
		if err == nil {
			after.prefix, err = netip.ParsePrefix(s)
		}
		if err != nil {
			return nil, invalid("page_token %s is not one this server gave", Quote(tok))
		}
	}
	sp, err := d.span(ctx, req.GetWindow())
	if err != nil {
		return nil, err
	}
	size, err := d.prefixPageSize(req.GetPageSize(), sp)
	if err != nil {
		return nil, err
	}
	resp := &pb.GetPrefixesResponse{Window: sp.timeRange()}
	page, err := d.prefixPage(ctx, req.GetAsn(), family, sp, after, size+1)
	if err != nil {
		return nil, err
	}
	if len(page) == size+1 {
		page = page[:size]
		last := page[size-1]
		resp.NextPageToken = encodeToken(family4or6(last.GetFamily()), " ", last.GetPrefix())
	}
	if len(page) == 0 && req.GetPageToken() == "" {
		var known bool
		if err := d.read.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM agg_class WHERE asn = $1)", int64(req.GetAsn())).Scan(&known); err != nil {
			return nil, fmt.Errorf("dataset: prefixes: %w", err)
		}
		if !known {
			return nil, fmt.Errorf("%w: no measurements from AS%d", ErrNotFound, req.GetAsn())
		}
	}
	if err := d.prefixVerdicts(ctx, req.GetAsn(), sp, page); err != nil {
		return nil, err
	}
	resp.Prefixes = page
	return resp, nil
}

// prefixPageSize is pageSize, also bounded by MaxPrefixDays.
func (d *Dataset) prefixPageSize(n uint32, sp span) (int, error) {
	days := int(sp.end.Sub(sp.start) / Day)
	most := max(min(d.cfg.MaxPageSize, MaxPrefixDays/days), 1)
	switch {
	case n == 0:
		return min(d.cfg.PageSize, most), nil
	case int64(n) > int64(most):
		return 0, invalid("page_size %d: at most %d prefixes for a %d-day window", n, most, days)
	}
	return int(n), nil
}

// prefixPage returns at most limit prefixes of asn after the key after,
// with their agents, results and the days they were seen.
func (d *Dataset) prefixPage(ctx context.Context, asn uint32, family int16, sp span, after prefixKey, limit int) ([]*pb.PrefixSummary, error) {
	rows, err := d.read.Query(ctx, `SELECT family, prefix,
			count(DISTINCT agent_id) FILTER (WHERE n_open + n_blocked_timeout + n_blocked_reset + n_blocked_unreachable
				+ n_intercepted + n_tampered > 0),
			sum(n_open + n_blocked_timeout + n_blocked_reset + n_blocked_unreachable + n_intercepted + n_tampered + n_inconclusive)::bigint,
			min(day), max(day)
		FROM agg_agent_day
		WHERE asn = $1 AND ($2 = 0 OR family = $2) AND day >= $3 AND day < $4 AND (family, prefix) > ($5, $6::cidr)
		GROUP BY family, prefix ORDER BY family, prefix LIMIT $7`,
		int64(asn), family, sp.start, sp.end, after.family, after.prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("dataset: prefixes: %w", err)
	}
	var out []*pb.PrefixSummary
	var k prefixKey
	var agents, results int64
	var first, last time.Time
	_, err = pgx.ForEachRow(rows, []any{&k.family, &k.prefix, &agents, &results, &first, &last}, func() error {
		out = append(out, &pb.PrefixSummary{Family: familyPB(k.family), Prefix: k.prefix.Masked().String(),
			Agents: uint64(agents), Results: uint64(results), FirstSeen: timestamppb.New(first), LastSeen: timestamppb.New(last)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: prefixes: %w", err)
	}
	return out, nil
}

// prefixVerdictsSQL counts, per prefix of the page ($2, $3) and port, the
// agents of each verdict (NULL: none conclusive) over the span's days ($4,
// $5) and, in the rows with a day, on each day. In each group the first row
// with a verdict is the prefix's: most agents, ties to the lower verdict,
// as in deriveSQL.
const prefixVerdictsSQL = `WITH a AS (
	SELECT t.day AS d, t.family, t.prefix, t.port, t.agent_id,
		sum(n_open) AS n1, sum(n_blocked_timeout) AS n2, sum(n_blocked_reset) AS n3,
		sum(n_blocked_unreachable) AS n4, sum(n_intercepted) AS n5, sum(n_tampered) AS n6, sum(n_inconclusive) AS n7,
		sum(n_charged) AS nc
	FROM agg_agent_day t JOIN unnest($2::smallint[], $3::cidr[]) AS k(family, prefix) ON t.family = k.family AND t.prefix = k.prefix
	WHERE t.asn = $1 AND t.day >= $4 AND t.day < $5
	GROUP BY GROUPING SETS ((t.day, t.family, t.prefix, t.port, t.agent_id), (t.family, t.prefix, t.port, t.agent_id))
), av AS (
	SELECT *, ` + agentVerdictSQL + ` AS verdict
	FROM a
)
SELECT d, family, prefix, port, verdict, count(*), sum(n1 + n2 + n3 + n4 + n5 + n6 + n7)::bigint, sum(nc)::bigint
FROM av GROUP BY d, family, prefix, port, verdict
ORDER BY family, prefix, d NULLS FIRST, port, verdict IS NULL, count(*) DESC, verdict`

// prefixVerdicts fills in the ports and days of the prefixes of a page.
func (d *Dataset) prefixVerdicts(ctx context.Context, asn uint32, sp span, page []*pb.PrefixSummary) error {
	if len(page) == 0 {
		return nil
	}
	byKey := map[prefixKey]*pb.PrefixSummary{}
	families := make([]int16, 0, len(page))
	prefixes := make([]netip.Prefix, 0, len(page))
	for _, p := range page {
		k := prefixKey{family4or6(p.GetFamily()), netip.MustParsePrefix(p.GetPrefix())}
		byKey[k] = p
		families, prefixes = append(families, k.family), append(prefixes, k.prefix)
	}
	rows, err := d.read.Query(ctx, prefixVerdictsSQL, int64(asn), families, prefixes, sp.start, sp.end)
	if err != nil {
		return fmt.Errorf("dataset: prefix verdicts: %w", err)
	}
	var (
		day                      *time.Time
		k                        prefixKey
		port                     int32
		verdict                  *int16
		agents, results, charged int64
	)
	_, err = pgx.ForEachRow(rows, []any{&day, &k.family, &k.prefix, &port, &verdict, &agents, &results, &charged}, func() error {
		p := byKey[prefixKey{k.family, k.prefix.Masked()}]
		if p == nil {
			return fmt.Errorf("prefix %s is not on the page", k.prefix)
		}
		if day == nil { // the window
			if n := len(p.Ports); n == 0 || p.Ports[n-1].GetPort() != uint32(port) {
				p.Ports = append(p.Ports, &pb.PrefixPort{Port: uint32(port)})
			}
			pp := p.Ports[len(p.Ports)-1]
			pp.Results += uint64(results)
			pp.RefmtaCharged += uint64(charged)
			if verdict != nil {
				if pp.Verdict == pb.Verdict_VERDICT_UNSPECIFIED {
					pp.Verdict = pb.Verdict(*verdict)
				}
				pp.AgentVerdicts = append(pp.AgentVerdicts, &pb.VerdictAgents{Verdict: pb.Verdict(*verdict), Agents: uint64(agents)})
			}
			return nil
		}
		if verdict == nil {
			return nil
		}
		n := len(p.Days)
		if n == 0 || !p.Days[n-1].GetDay().AsTime().Equal(*day) {
			p.Days = append(p.Days, &pb.PrefixDay{Day: timestamppb.New(*day)})
			n++
		}
		pd := p.Days[n-1]
		if n := len(pd.Ports); n == 0 || pd.Ports[n-1].GetPort() != uint32(port) {
			pd.Ports = append(pd.Ports, &pb.PortVerdict{Port: uint32(port), Verdict: pb.Verdict(*verdict)})
		}
		pd.Ports[len(pd.Ports)-1].Agents += uint64(agents)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dataset: prefix verdicts: %w", err)
	}
	for _, p := range page {
		for _, pp := range p.Ports {
			slices.SortFunc(pp.AgentVerdicts, func(a, b *pb.VerdictAgents) int { return int(a.GetVerdict()) - int(b.GetVerdict()) })
		}
	}
	return nil
}
