package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// tallyColumns are the columns of results that the rollups read.
const tallyColumns = "asn, family, port, measured_at, agent_id, prefix, verdict, public_evidence, refmta_id, refmta_charged, submission_id"

// CountColumns are the count columns of agg_agent_day, and of agg_delta
// and agg_agent_window, which hold the same counts.
const CountColumns = "n_open, n_blocked_timeout, n_blocked_reset, n_blocked_unreachable, n_intercepted, n_tampered, n_inconclusive, n_charged"

// AddCounts is the SET list of an upsert into table (one with
// CountColumns) that adds the new row's counts to the stored row's.
func AddCounts(table string) string {
	var b strings.Builder
	for i, c := range strings.Split(CountColumns, ", ") {
		if i > 0 {
			b.WriteString(",\n\t\t")
		}
		fmt.Fprintf(&b, "%s = %s.%s + excluded.%s", c, table, c, c)
	}
	return b.String()
}

// tallyAgent is the agent a result counts for in agg_agent_day: its own,
// or for a one-off contribution the prefix's one-off agent, so that one-off
// results weigh at most one agent per prefix however often they come.
const tallyAgent = "CASE WHEN submission_id IS NULL THEN agent_id ELSE 'one-off ' || prefix::text END"

// tallySQL returns the data-modifying CTEs that add the results in source
// (a relation with tallyColumns) to agg_agent_day, agg_evidence and
// agg_refmta_day. Ingest runs them on the rows it has just inserted,
// RebuildTallies on every stored result, so that both count the same way.
// With changes, they also append what they add to agg_agent_day to
// agg_delta, for the rolling windows, and mark its (asn, family, day)
// dirty in agg_dirty, for the daily points (migrations 0002 and 0007).
// Unattributed results (no ASN or prefix) are not published and not
// counted per ASN; results charged to a reference MTA's side are counted
// per ASN only in n_charged, and per reference MTA like the others.
// One-off results count as the one-off agent of their prefix (tallyAgent).
func tallySQL(source string, changes bool) string {
	log := ""
	if changes {
		log = `, delta AS (
	INSERT INTO agg_delta (asn, family, port, day, agent_id, prefix, ` + CountColumns + `)
	SELECT * FROM counts
), dirty AS (
	INSERT INTO agg_dirty (asn, family, day)
	SELECT DISTINCT asn, family, day FROM counts
)`
	}
	return `counts AS (
	SELECT asn, family, port, (measured_at AT TIME ZONE 'UTC')::date AS day, ` + tallyAgent + ` AS agent_id, prefix,
		count(*) FILTER (WHERE verdict = 1 AND NOT refmta_charged)::integer AS n_open,
		count(*) FILTER (WHERE verdict = 2 AND NOT refmta_charged)::integer AS n_blocked_timeout,
		count(*) FILTER (WHERE verdict = 3 AND NOT refmta_charged)::integer AS n_blocked_reset,
		count(*) FILTER (WHERE verdict = 4 AND NOT refmta_charged)::integer AS n_blocked_unreachable,
		count(*) FILTER (WHERE verdict = 5 AND NOT refmta_charged)::integer AS n_intercepted,
		count(*) FILTER (WHERE verdict = 6 AND NOT refmta_charged)::integer AS n_tampered,
		count(*) FILTER (WHERE verdict = 7 AND NOT refmta_charged)::integer AS n_inconclusive,
		count(*) FILTER (WHERE refmta_charged)::integer AS n_charged
	FROM ` + source + ` WHERE asn IS NOT NULL AND prefix IS NOT NULL
	GROUP BY 1, 2, 3, 4, 5, 6
), tally AS (
	INSERT INTO agg_agent_day (asn, family, port, day, agent_id, prefix, ` + CountColumns + `)
	SELECT * FROM counts ORDER BY 1, 2, 3, 4, 5, 6
	ON CONFLICT (asn, family, port, day, agent_id, prefix) DO UPDATE SET
		` + AddCounts("agg_agent_day") + `
), evidence AS (
	INSERT INTO agg_evidence (asn, family, port, verdict, text, first_seen, last_seen, results)
	SELECT asn, family, port, verdict, public_evidence, min(measured_at), max(measured_at), count(*)
	FROM ` + source + ` WHERE asn IS NOT NULL AND public_evidence <> '' AND NOT refmta_charged
	GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
	ON CONFLICT (asn, family, port, verdict, text) DO UPDATE SET
		first_seen = least(agg_evidence.first_seen, excluded.first_seen),
		last_seen = greatest(agg_evidence.last_seen, excluded.last_seen),
		results = agg_evidence.results + excluded.results
), refmta AS (
	INSERT INTO agg_refmta_day (refmta_id, family, port, day, n_open, n_blocked, n_intercepted, n_inconclusive, n_charged)
	SELECT refmta_id, family, port, (measured_at AT TIME ZONE 'UTC')::date,
		count(*) FILTER (WHERE verdict = 1), count(*) FILTER (WHERE verdict IN (2, 3, 4)),
		count(*) FILTER (WHERE verdict IN (5, 6)), count(*) FILTER (WHERE verdict = 7), count(*) FILTER (WHERE refmta_charged)
	FROM ` + source + `
	GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
	ON CONFLICT (refmta_id, family, port, day) DO UPDATE SET
		n_open = agg_refmta_day.n_open + excluded.n_open,
		n_blocked = agg_refmta_day.n_blocked + excluded.n_blocked,
		n_intercepted = agg_refmta_day.n_intercepted + excluded.n_intercepted,
		n_inconclusive = agg_refmta_day.n_inconclusive + excluded.n_inconclusive,
		n_charged = agg_refmta_day.n_charged + excluded.n_charged
)` + log
}

// chargedSQL returns a query of the (result_id, measured_at) of the results
// in source (a relation with the columns of results) that are charged to
// their reference MTA's side. Results are compared within one agent, round,
// port and family among those stored together (the same received_at: one
// transaction, an upload batch or those group commit merged), by verdict group (1 OPEN, 2 BLOCKED_*, 3 INTERCEPTED or
// TAMPERED; INCONCLUSIVE takes no side), each reference MTA standing for its
// network: the ASN of its address, else its /24 or /48. When networks
// disagree, the results whose group is not the one more than half of the
// networks saw are charged. Without such a majority, OPEN stands when one
// network saw it (a signed OPEN cannot come from a fault on the reference
// MTA's side, and it shows that the agent's network lets port 25 out) and
// the other results are charged; else every conclusive result is charged,
// as nothing tells which side is wrong. Results without a round or a known
// reference MTA network are never compared. docs/dataset.md states the
// rule.
func chargedSQL(source string) string {
	return `WITH c AS (
	SELECT result_id, measured_at, agent_id, round_id, received_at, port, family,
		CASE WHEN verdict = 1 THEN 1 WHEN verdict IN (2, 3, 4) THEN 2 ELSE 3 END AS grp,
		coalesce('AS' || refmta_asn, refmta_prefix::text) AS net
	FROM ` + source + `
	WHERE round_id <> '' AND verdict BETWEEN 1 AND 6 AND (refmta_asn IS NOT NULL OR refmta_prefix IS NOT NULL)
), probes AS (
	SELECT agent_id, round_id, received_at, port, family, count(DISTINCT net) AS nets
	FROM c GROUP BY 1, 2, 3, 4, 5 HAVING count(DISTINCT net) >= 2
), votes AS (
	SELECT agent_id, round_id, received_at, port, family, grp, count(DISTINCT net) AS nets
	FROM c GROUP BY 1, 2, 3, 4, 5, 6
), decided AS (
	SELECT p.agent_id, p.round_id, p.received_at, p.port, p.family,
		CASE WHEN count(*) FILTER (WHERE 2 * v.nets > p.nets) = 1 THEN max(v.grp) FILTER (WHERE 2 * v.nets > p.nets)
			WHEN bool_or(v.grp = 1) THEN 1 END AS majority
	FROM probes p JOIN votes v USING (agent_id, round_id, received_at, port, family)
	GROUP BY 1, 2, 3, 4, 5 HAVING count(*) >= 2
)
SELECT c.result_id, c.measured_at FROM c JOIN decided d USING (agent_id, round_id, received_at, port, family)
WHERE d.majority IS DISTINCT FROM c.grp`
}

// RebuildTallies recomputes which results are charged to a reference MTA's
// side, then agg_agent_day, agg_evidence and agg_refmta_day from every
// stored result, inside tx, and empties agg_dirty and agg_delta: the caller
// recomputes every derived row. It locks the tallies against ingest
// (readers go on) until tx ends, so that no result is counted twice or
// missed. The tallies of retired days (retire.go), whose raw results are
// gone, are kept as they are; so is agg_evidence once any day is retired,
// as it sums over all days and cannot be counted again without them.
func RebuildTallies(ctx context.Context, tx pgx.Tx) (results int64, err error) {
	for _, q := range []string{
		"LOCK TABLE agg_agent_day, agg_evidence, agg_refmta_day IN EXCLUSIVE MODE",
		// The comparison's plan needs statistics as fresh as the rows.
		"ANALYZE results",
		// Only the rows whose marker changes are written.
		`WITH ch AS MATERIALIZED (` + chargedSQL("results") + `), fix AS (
			SELECT result_id, measured_at, true AS charged FROM ch
			UNION ALL
			SELECT result_id, measured_at, false FROM results r WHERE refmta_charged
				AND NOT EXISTS (SELECT 1 FROM ch WHERE ch.result_id = r.result_id AND ch.measured_at = r.measured_at))
		UPDATE results r SET refmta_charged = fix.charged FROM fix
		WHERE r.result_id = fix.result_id AND r.measured_at = fix.measured_at AND r.refmta_charged <> fix.charged`,
		"DELETE FROM agg_dirty",
		"DELETE FROM agg_delta",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("store: rebuild tallies: %w", err)
		}
	}
	// Retired days keep their tallies: their raw results are gone.
	raw, err := rawDays(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("store: rebuild tallies: %w", err)
	}
	for _, t := range []string{"agg_agent_day", "agg_refmta_day"} {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t+" WHERE day = ANY($1)", raw); err != nil {
			return 0, fmt.Errorf("store: rebuild tallies: %w", err)
		}
	}
	// What is left of agg_refmta_day (which counts every result) are the
	// tallies of retired days.
	var retired bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM agg_refmta_day)").Scan(&retired); err != nil {
		return 0, fmt.Errorf("store: rebuild tallies: %w", err)
	}
	if retired {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE agg_evidence_kept ON COMMIT DROP AS SELECT * FROM agg_evidence"); err != nil {
			return 0, fmt.Errorf("store: rebuild tallies: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM agg_evidence"); err != nil {
		return 0, fmt.Errorf("store: rebuild tallies: %w", err)
	}
	err = tx.QueryRow(ctx, "WITH src AS MATERIALIZED (SELECT "+tallyColumns+" FROM results), "+tallySQL("src", false)+
		" SELECT count(*) FROM src").Scan(&results)
	if err != nil {
		return 0, fmt.Errorf("store: rebuild tallies: %w", err)
	}
	if retired {
		for _, q := range []string{"DELETE FROM agg_evidence", "INSERT INTO agg_evidence SELECT * FROM agg_evidence_kept"} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return 0, fmt.Errorf("store: rebuild tallies: keep the evidence of retired days: %w", err)
			}
		}
	}
	return results, nil
}
