package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// The limits: the same answers computed by one plain SQL query over the
// raw results, with the published method written out again here (not
// taken from the dataset package): each agent's majority verdict over its
// conclusive results per ASN, family, port and prefix; each prefix's
// majority over its agents (ties to the lower verdict); prefix counts per
// verdict; distinct agents and prefixes per port and, as port 0, per ASN.

// rawSQL returns that query over the results measured in [$1, $2), one
// span per UTC day when daily, else one for the whole range; oneASN
// restricts it to ASN $3.
func rawSQL(daily, oneASN bool) string {
	span, where := "DATE '2000-01-01'", ""
	if daily {
		span = "(measured_at AT TIME ZONE 'UTC')::date"
	}
	if oneASN {
		where = " AND asn = $3"
	}
	return `WITH a AS (
	SELECT ` + span + ` AS d, asn, family, port, agent_id, prefix,
		count(*) FILTER (WHERE verdict = 1) AS n1, count(*) FILTER (WHERE verdict = 2) AS n2,
		count(*) FILTER (WHERE verdict = 3) AS n3, count(*) FILTER (WHERE verdict = 4) AS n4,
		count(*) FILTER (WHERE verdict = 5) AS n5, count(*) FILTER (WHERE verdict = 6) AS n6,
		count(*) AS n
	FROM results
	WHERE measured_at >= $1 AND measured_at < $2 AND asn IS NOT NULL AND prefix IS NOT NULL` + where + `
	GROUP BY 1, 2, 3, 4, 5, 6
), av AS (
	SELECT *, CASE greatest(n1, n2, n3, n4, n5, n6) WHEN 0 THEN NULL WHEN n1 THEN 1 WHEN n2 THEN 2
		WHEN n3 THEN 3 WHEN n4 THEN 4 WHEN n5 THEN 5 ELSE 6 END AS verdict
	FROM a
), pv AS (
	SELECT DISTINCT ON (d, asn, family, port, prefix) d, asn, family, port, prefix, verdict
	FROM (SELECT d, asn, family, port, prefix, verdict, count(*) AS c FROM av
		WHERE verdict IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6) AS x
	ORDER BY d, asn, family, port, prefix, c DESC, verdict
), vc AS (
	SELECT d, asn, family, port,
		count(*) FILTER (WHERE verdict = 1) AS p1, count(*) FILTER (WHERE verdict = 2) AS p2,
		count(*) FILTER (WHERE verdict = 3) AS p3, count(*) FILTER (WHERE verdict = 4) AS p4,
		count(*) FILTER (WHERE verdict = 5) AS p5, count(*) FILTER (WHERE verdict = 6) AS p6
	FROM pv GROUP BY 1, 2, 3, 4
), ag AS (
	SELECT d, asn, family, coalesce(port, 0) AS port,
		count(DISTINCT agent_id) FILTER (WHERE verdict IS NOT NULL) AS agents,
		count(DISTINCT prefix) FILTER (WHERE verdict IS NOT NULL) AS prefixes,
		sum(n)::bigint AS results
	FROM av GROUP BY GROUPING SETS ((d, asn, family, port), (d, asn, family))
)
SELECT ag.d, ag.asn, ag.family, ag.port, ag.agents, ag.prefixes, ag.results,
	coalesce(p1, 0), coalesce(p2, 0), coalesce(p3, 0), coalesce(p4, 0), coalesce(p5, 0), coalesce(p6, 0)
FROM ag LEFT JOIN vc USING (d, asn, family, port)
ORDER BY 1, 2, 3, 4`
}

// key names one published port (port 0: the ASN level) of an ASN and
// family in a span ("" for the window, else the day).
type key struct {
	day    string
	asn    uint32
	family int16
	port   uint32
}

type counts struct {
	agents, prefixes, results int64
	p                         [6]int64 // prefixes by majority verdict, OPEN..TAMPERED
}

type table map[key]counts

// plainSQL runs rawSQL and returns its answer in the API's terms.
func plainSQL(ctx context.Context, pool *pgxpool.Pool, daily bool, start, end time.Time, asn uint32) (table, error) {
	args := []any{start, end}
	if asn != 0 {
		args = append(args, int64(asn))
	}
	rows, err := pool.Query(ctx, rawSQL(daily, asn != 0), args...)
	if err != nil {
		return nil, fmt.Errorf("plain SQL: %w", err)
	}
	t := table{}
	var d time.Time
	var a int64
	var k key
	var port int32
	var c counts
	_, err = pgx.ForEachRow(rows, []any{&d, &a, &k.family, &port, &c.agents, &c.prefixes, &c.results,
		&c.p[0], &c.p[1], &c.p[2], &c.p[3], &c.p[4], &c.p[5]}, func() error {
		k.asn, k.port, k.day = uint32(a), uint32(port), ""
		if daily {
			k.day = d.UTC().Format(time.DateOnly)
		}
		if port == 0 { // the API publishes agents and prefixes at ASN level
			t[k] = counts{agents: c.agents, prefixes: c.prefixes}
		} else {
			t[k] = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("plain SQL: %w", err)
	}
	return t, nil
}

func family(f pb.AddressFamily) int16 {
	if f == pb.AddressFamily_ADDRESS_FAMILY_IPV6 {
		return 6
	}
	return 4
}

func portCounts(ps *pb.PortStats) counts {
	c := counts{agents: int64(ps.GetAgents()), prefixes: int64(ps.GetPrefixes()), results: int64(ps.GetResults())}
	for _, s := range ps.GetShares() {
		if v := int(s.GetVerdict()); v >= 1 && v <= 6 {
			c.p[v-1] = int64(s.GetCount())
		}
	}
	return c
}

// addSummaries adds the API's ASN summaries to t.
func (t table) addSummaries(ss []*pb.ASNSummary) {
	for _, s := range ss {
		k := key{asn: s.GetAsn(), family: family(s.GetFamily())}
		t[k] = counts{agents: int64(s.GetAgents()), prefixes: int64(s.GetPrefixes())}
		for _, ps := range s.GetPorts() {
			k.port = ps.GetPort()
			t[k] = portCounts(ps)
		}
	}
}

// addTimeline adds the API's timeline of asn to t.
func (t table) addTimeline(asn uint32, points []*pb.TimelinePoint) {
	for _, p := range points {
		k := key{day: p.GetDay().AsTime().UTC().Format(time.DateOnly), asn: asn, family: family(p.GetFamily())}
		t[k] = counts{agents: int64(p.GetAgents()), prefixes: int64(p.GetPrefixes())}
		for _, ps := range p.GetPorts() {
			k.port = ps.GetPort()
			t[k] = portCounts(ps)
		}
	}
}

// diff returns how many keys differ between the API's answer and the
// plain SQL's, and a few of them.
func diff(api, sql table) (int, []string) {
	var bad []string
	n := 0
	seen := map[key]bool{}
	for _, t := range []table{api, sql} {
		for k := range t {
			if seen[k] {
				continue
			}
			seen[k] = true
			a, inAPI := api[k]
			s, inSQL := sql[k]
			if inAPI && inSQL && a == s {
				continue
			}
			n++
			bad = append(bad, fmt.Sprintf("%s AS%d ipv%d port %d: api %s, plain SQL %s", k.day, k.asn, k.family, k.port, show(a, inAPI), show(s, inSQL)))
		}
	}
	slices.Sort(bad)
	return n, bad[:min(len(bad), 8)]
}

func show(c counts, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprintf("agents %d prefixes %d results %d p %v", c.agents, c.prefixes, c.results, c.p)
}

// exportSQL is the dataset export of [start, end) as one COPY statement,
// with the same columns, names and order as the API's CSV.
func exportSQL(start, end time.Time) string {
	return fmt.Sprintf(`COPY (SELECT r.result_id, r.measured_at, coalesce(r.asn, 0), coalesce(n.country, ''),
		coalesce(r.prefix::text, ''), CASE r.family WHEN 6 THEN 'ipv6' ELSE 'ipv4' END, r.port,
		CASE r.verdict WHEN 1 THEN 'OPEN' WHEN 2 THEN 'BLOCKED_TIMEOUT' WHEN 3 THEN 'BLOCKED_RESET'
			WHEN 4 THEN 'BLOCKED_UNREACHABLE' WHEN 5 THEN 'INTERCEPTED' WHEN 6 THEN 'TAMPERED' ELSE 'INCONCLUSIVE' END,
		r.failure, r.refmta_id, r.agent_id
	FROM results r LEFT JOIN as_names n ON n.asn = r.asn
	WHERE r.measured_at >= '%s' AND r.measured_at < '%s'
	ORDER BY r.result_id) TO STDOUT (FORMAT csv, HEADER)`, start.Format(time.RFC3339), end.Format(time.RFC3339))
}

// archiveSQL is the public columns of a day's results in the daily
// archive's order (measured_at, then result_id), as one COPY statement.
func archiveSQL(day time.Time) string {
	return fmt.Sprintf(`COPY (SELECT r.result_id, r.measured_at, coalesce(r.asn, 0), coalesce(n.country, ''),
		coalesce(r.prefix::text, ''), r.family, r.port, r.verdict, r.failure, r.refmta_id, r.agent_id, r.refmta_charged,
		r.submission_id
	FROM results r LEFT JOIN as_names n ON n.asn = r.asn
	WHERE r.measured_at >= '%s' AND r.measured_at < '%s'
	ORDER BY r.measured_at, r.result_id) TO STDOUT`, day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339))
}
