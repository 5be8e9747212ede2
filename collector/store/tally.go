package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// tallyColumns are the columns of results that the rollups read.
const tallyColumns = "asn, family, port, measured_at, agent_id, prefix, verdict, public_evidence"

// tallySQL returns the data-modifying CTEs that add the results in source
// (a relation with tallyColumns) to agg_agent_day and agg_evidence and mark
// their (asn, family, day) dirty. Ingest runs them on the rows it has just
// inserted, RebuildTallies on every stored result, so that both count the
// same way. Unattributed results (no ASN or prefix) are not published and
// not counted.
func tallySQL(source string) string {
	return `tally AS (
	INSERT INTO agg_agent_day (asn, family, port, day, agent_id, prefix, n_open, n_blocked_timeout,
		n_blocked_reset, n_blocked_unreachable, n_intercepted, n_tampered, n_inconclusive)
	SELECT asn, family, port, (measured_at AT TIME ZONE 'UTC')::date, agent_id, prefix,
		count(*) FILTER (WHERE verdict = 1), count(*) FILTER (WHERE verdict = 2),
		count(*) FILTER (WHERE verdict = 3), count(*) FILTER (WHERE verdict = 4),
		count(*) FILTER (WHERE verdict = 5), count(*) FILTER (WHERE verdict = 6),
		count(*) FILTER (WHERE verdict = 7)
	FROM ` + source + ` WHERE asn IS NOT NULL AND prefix IS NOT NULL
	GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
	ON CONFLICT (asn, family, port, day, agent_id, prefix) DO UPDATE SET
		n_open = agg_agent_day.n_open + excluded.n_open,
		n_blocked_timeout = agg_agent_day.n_blocked_timeout + excluded.n_blocked_timeout,
		n_blocked_reset = agg_agent_day.n_blocked_reset + excluded.n_blocked_reset,
		n_blocked_unreachable = agg_agent_day.n_blocked_unreachable + excluded.n_blocked_unreachable,
		n_intercepted = agg_agent_day.n_intercepted + excluded.n_intercepted,
		n_tampered = agg_agent_day.n_tampered + excluded.n_tampered,
		n_inconclusive = agg_agent_day.n_inconclusive + excluded.n_inconclusive
), evidence AS (
	INSERT INTO agg_evidence (asn, family, port, verdict, text, first_seen, last_seen, results)
	SELECT asn, family, port, verdict, public_evidence, min(measured_at), max(measured_at), count(*)
	FROM ` + source + ` WHERE asn IS NOT NULL AND public_evidence <> ''
	GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
	ON CONFLICT (asn, family, port, verdict, text) DO UPDATE SET
		first_seen = least(agg_evidence.first_seen, excluded.first_seen),
		last_seen = greatest(agg_evidence.last_seen, excluded.last_seen),
		results = agg_evidence.results + excluded.results
), dirty AS (
	INSERT INTO agg_dirty (asn, family, day)
	SELECT DISTINCT asn, family, (measured_at AT TIME ZONE 'UTC')::date
	FROM ` + source + ` WHERE asn IS NOT NULL AND prefix IS NOT NULL
)`
}

// RebuildTallies recomputes agg_agent_day and agg_evidence from every stored
// result, inside tx, and marks every key dirty. It locks both tables
// against ingest (readers go on) until tx ends, so that no result is counted
// twice or missed.
func RebuildTallies(ctx context.Context, tx pgx.Tx) (results int64, err error) {
	for _, q := range []string{
		"LOCK TABLE agg_agent_day, agg_evidence IN EXCLUSIVE MODE",
		"DELETE FROM agg_agent_day",
		"DELETE FROM agg_evidence",
		"DELETE FROM agg_dirty",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("store: rebuild tallies: %w", err)
		}
	}
	err = tx.QueryRow(ctx, "WITH src AS MATERIALIZED (SELECT "+tallyColumns+" FROM results), "+tallySQL("src")+
		" SELECT count(*) FROM src").Scan(&results)
	if err != nil {
		return 0, fmt.Errorf("store: rebuild tallies: %w", err)
	}
	return results, nil
}
