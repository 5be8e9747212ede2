package dataset

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// querier is what derive needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// keys restricts a derivation to some (asn, family) pairs, or with days to
// some (asn, family, day) triples. The zero value is every key.
type keys struct {
	asns     []int64
	families []int16
	days     []time.Time // nil: every day of the span
}

func (k keys) all() bool { return k.asns == nil }

// derived is the state of one ASN and family in one span.
type derived struct {
	asn       uint32
	family    int16
	day       time.Time // the day, or the window's last day
	asnRow    portRow   // port 0: distinct agents and prefixes over the ports
	ports     map[uint32]*portRow
	class     int16
	blocked25 float64
}

// source is the tallies a derivation reads and the spans it makes.
type source int

const (
	// daily: agg_agent_day in the days [$1, $2), one span per day.
	daily source = iota
	// whole: agg_agent_day in the days [$1, $2), one span.
	whole
	// window: agg_agent_window of the $1-day window, which ends with the
	// day before $2, one span.
	window
)

// agentVerdictSQL is an agent's verdict from its tallies n1..n6 of the
// conclusive verdicts: the most frequent, ties to the lower verdict number,
// NULL when it has none. GetPrefixes uses it too.
const agentVerdictSQL = `CASE greatest(n1, n2, n3, n4, n5, n6) WHEN 0 THEN NULL WHEN n1 THEN 1 WHEN n2 THEN 2
		WHEN n3 THEN 3 WHEN n4 THEN 4 WHEN n5 THEN 5 ELSE 6 END`

// deriveSQL computes, from the agents' tallies of src, per span, ASN,
// family and port: each agent's majority verdict over its conclusive
// results, then each prefix's majority over its agents, then prefix counts
// per verdict. Ties go to the lower verdict number. GROUPING SETS adds the
// ASN-level distinct counts as port 0. The join, when present, restricts
// the keys.
func deriveSQL(src source, k keys) string {
	day, table, where := "($2::date - 1)", "agg_agent_day", "t.day >= $1 AND t.day < $2"
	switch src {
	case daily:
		day = "t.day"
	case window:
		table, where = "agg_agent_window", "t.window_days = $1"
	}
	join := ""
	switch {
	case k.all():
	case k.days == nil:
		join = "JOIN unnest($3::bigint[], $4::smallint[]) AS k(asn, family) ON t.asn = k.asn AND t.family = k.family"
	default:
		join = "JOIN unnest($3::bigint[], $4::smallint[], $5::date[]) AS k(asn, family, day) ON t.asn = k.asn AND t.family = k.family AND t.day = k.day"
	}
	return `WITH a AS (
	SELECT ` + day + ` AS d, t.asn, t.family, t.port, t.agent_id, t.prefix,
		sum(n_open) AS n1, sum(n_blocked_timeout) AS n2, sum(n_blocked_reset) AS n3,
		sum(n_blocked_unreachable) AS n4, sum(n_intercepted) AS n5, sum(n_tampered) AS n6, sum(n_inconclusive) AS n7,
		sum(n_charged) AS nc
	FROM ` + table + ` t ` + join + `
	WHERE ` + where + `
	GROUP BY 1, 2, 3, 4, 5, 6
), av AS (
	SELECT *, ` + agentVerdictSQL + ` AS verdict
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
		sum(n1 + n2 + n3 + n4 + n5 + n6 + n7)::bigint AS results, sum(nc)::bigint AS charged
	FROM av GROUP BY GROUPING SETS ((d, asn, family, port), (d, asn, family))
)
SELECT ag.d, ag.asn, ag.family, ag.port, ag.agents, ag.prefixes, ag.results, ag.charged,
	coalesce(p1, 0), coalesce(p2, 0), coalesce(p3, 0), coalesce(p4, 0), coalesce(p5, 0), coalesce(p6, 0)
FROM ag LEFT JOIN vc USING (d, asn, family, port)
ORDER BY 1, 2, 3, 4`
}

// derive computes and classifies the state of the keys k over the days
// [start, end) from the tallies of src: one state per day when daily, else
// one for the whole span. For a window, start is end less its days.
func (d *Dataset) derive(ctx context.Context, q querier, start, end time.Time, src source, k keys) ([]*derived, error) {
	args := []any{start, end}
	if src == window {
		args[0] = int16(end.Sub(start) / Day)
	}
	if !k.all() {
		args = append(args, k.asns, k.families)
		if k.days != nil {
			args = append(args, k.days)
		}
	}
	rows, err := q.Query(ctx, deriveSQL(src, k), args...)
	if err != nil {
		return nil, fmt.Errorf("dataset: derive: %w", err)
	}
	defer rows.Close()
	var out []*derived
	var cur *derived
	for rows.Next() {
		var day time.Time
		var asn int64
		var r portRow
		var port int32
		if err := rows.Scan(&day, &asn, &r.family, &port, &r.agents, &r.prefixes, &r.results, &r.charged,
			&r.p[0], &r.p[1], &r.p[2], &r.p[3], &r.p[4], &r.p[5]); err != nil {
			return nil, fmt.Errorf("dataset: derive: %w", err)
		}
		r.asn, r.port = uint32(asn), uint32(port)
		if cur == nil || cur.asn != r.asn || cur.family != r.family || !cur.day.Equal(day) {
			cur = &derived{asn: r.asn, family: r.family, day: day, ports: map[uint32]*portRow{}}
			out = append(out, cur)
		}
		if r.port == 0 {
			cur.asnRow = r
		} else {
			cur.ports[r.port] = &r
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dataset: derive: %w", err)
	}
	for _, s := range out {
		c, b := classify(s.ports, d.cfg)
		s.class, s.blocked25 = int16(c), b
	}
	return out, nil
}

// write stores states as rows of agg_port and agg_class with window_days.
func write(ctx context.Context, tx pgx.Tx, windowDays int, states []*derived) error {
	var ports, classes [][]any
	for _, s := range states {
		add := func(r *portRow) {
			ports = append(ports, []any{int16(windowDays), int64(s.asn), s.family, s.day, int32(r.port),
				int32(r.agents), int32(r.prefixes), r.results, int32(r.p[0]), int32(r.p[1]), int32(r.p[2]),
				int32(r.p[3]), int32(r.p[4]), int32(r.p[5]), r.charged})
		}
		add(&s.asnRow)
		for _, r := range s.ports {
			add(r)
		}
		classes = append(classes, []any{int16(windowDays), int64(s.asn), s.family, s.day, s.class,
			int32(s.asnRow.agents), int32(s.asnRow.prefixes), s.blocked25})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"agg_port"}, strings.Fields(
		"window_days asn family day port agents prefixes results p_open p_blocked_timeout p_blocked_reset p_blocked_unreachable p_intercepted p_tampered charged"),
		pgx.CopyFromRows(ports)); err != nil {
		return fmt.Errorf("dataset: write ports: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"agg_class"}, strings.Fields(
		"window_days asn family day class agents prefixes blocked25"), pgx.CopyFromRows(classes)); err != nil {
		return fmt.Errorf("dataset: write classes: %w", err)
	}
	return nil
}
