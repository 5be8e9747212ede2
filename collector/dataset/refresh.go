package dataset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/store"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// refreshLock is the advisory lock key that lets one collector replica at
// a time change the derived tables ("agg" in ASCII).
const refreshLock = 0x616767

// RefreshStats says what one Refresh or Rebuild did.
type RefreshStats struct {
	Skipped bool // another replica holds the lock
	Keys    int  // (asn, family) pairs recomputed
	Days    int  // (asn, family, day) timeline points recomputed
	Windows bool // every rolling window was recomputed (a new day began)
	Results int64
	Took    time.Duration
}

// Refresh brings the derived tables up to date with the results ingested
// since the last refresh: the timeline days they touched, the rolling
// windows of their keys (every key when a new UTC day began) and their
// policy changes. When nothing changed it only records that the rollups
// are current. When another replica is refreshing or rebuilding it skips
// (RefreshStats.Skipped) rather than wait: that one takes the results in.
func (d *Dataset) Refresh(ctx context.Context) (RefreshStats, error) {
	began := time.Now()
	var st RefreshStats
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", refreshLock).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			st.Skipped = true
			return nil
		}
		today := Today(d.now())
		var asOf *time.Time
		if err := tx.QueryRow(ctx, "SELECT as_of FROM agg_state").Scan(&asOf); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "DELETE FROM agg_dirty RETURNING asn, family, day")
		if err != nil {
			return err
		}
		type triple struct {
			asn    int64
			family int16
			day    time.Time
		}
		seen := map[triple]bool{}
		var triples []triple
		var t triple
		_, err = pgx.ForEachRow(rows, []any{&t.asn, &t.family, &t.day}, func() error {
			if !seen[t] {
				seen[t] = true
				triples = append(triples, t)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Never the zero keys, which stand for every day: with nothing
		// dirty, the timeline has nothing to recompute.
		days := keys{asns: []int64{}, families: []int16{}, days: []time.Time{}}
		for _, t := range triples {
			days.asns = append(days.asns, t.asn)
			days.families = append(days.families, t.family)
			days.days = append(days.days, t.day)
		}
		st.Windows = asOf == nil || !asOf.Equal(today)
		st.Days = len(triples)
		st.Keys, err = d.recompute(ctx, tx, today, days, st.Windows)
		return err
	})
	st.Took = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("dataset: refresh: %w", err)
	}
	return st, nil
}

// Rebuild recomputes every tally and every derived row from the raw
// results, in one transaction: readers see the old state until it commits,
// and ingest waits for it. It first waits for a refresh in progress on any
// replica, whose refreshes skip until it is done. The outcome equals what
// incremental refreshes reach.
func (d *Dataset) Rebuild(ctx context.Context, log *slog.Logger) (RefreshStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	began := time.Now()
	var st RefreshStats
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", refreshLock); err != nil {
			return err
		}
		log.Info("rebuild: counting every stored result again")
		n, err := store.RebuildTallies(ctx, tx)
		if err != nil {
			return err
		}
		st.Results = n
		log.Info("rebuild: tallies done", "results", n, "elapsed", time.Since(began).Round(time.Millisecond))
		for _, q := range []string{"DELETE FROM agg_dirty", "DELETE FROM agg_port", "DELETE FROM agg_class", "DELETE FROM policy_changes"} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		st.Windows = true
		st.Keys, err = d.recompute(ctx, tx, Today(d.now()), keys{}, true)
		log.Info("rebuild: rollups done", "keys", st.Keys, "elapsed", time.Since(began).Round(time.Millisecond))
		return err
	})
	st.Took = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("dataset: rebuild: %w", err)
	}
	return st, nil
}

// recompute rewrites the timeline points of days (every day when days is
// the zero keys), the policy changes and rolling windows of their (asn,
// family) pairs, and, when allWindows, the rolling windows of every key.
func (d *Dataset) recompute(ctx context.Context, tx pgx.Tx, today time.Time, days keys, allWindows bool) (int, error) {
	pairs := keys{asns: []int64{}, families: []int16{}}
	if days.all() {
		pairs = keys{}
	} else {
		seen := map[[2]int64]bool{}
		for i := range days.asns {
			p := [2]int64{days.asns[i], int64(days.families[i])}
			if !seen[p] {
				seen[p] = true
				pairs.asns = append(pairs.asns, days.asns[i])
				pairs.families = append(pairs.families, days.families[i])
			}
		}
		if len(pairs.asns) == 0 && !allWindows {
			// Nothing ingested since the last refresh of today: the
			// rollups are current as they stand.
			return 0, d.markRefreshed(ctx, tx, today)
		}
	}
	// The timeline: one point per day.
	if days.all() || len(days.asns) > 0 {
		start, end := time.Time{}, today.Add(Day)
		if days.all() {
			var first, last *time.Time
			if err := tx.QueryRow(ctx, "SELECT min(day), max(day) FROM agg_agent_day").Scan(&first, &last); err != nil {
				return 0, err
			}
			if first != nil {
				start, end = *first, last.Add(Day)
			}
		} else {
			start, end = days.days[0], days.days[0]
			for _, day := range days.days {
				start = minTime(start, day)
				end = maxTime(end, day)
			}
			end = end.Add(Day)
			if _, err := tx.Exec(ctx, `DELETE FROM agg_port p USING unnest($1::bigint[], $2::smallint[], $3::date[]) AS k(asn, family, day)
				WHERE p.window_days = 0 AND p.asn = k.asn AND p.family = k.family AND p.day = k.day`, days.asns, days.families, days.days); err != nil {
				return 0, err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM agg_class c USING unnest($1::bigint[], $2::smallint[], $3::date[]) AS k(asn, family, day)
				WHERE c.window_days = 0 AND c.asn = k.asn AND c.family = k.family AND c.day = k.day`, days.asns, days.families, days.days); err != nil {
				return 0, err
			}
		}
		states, err := d.derive(ctx, tx, start, end, true, days)
		if err != nil {
			return 0, err
		}
		if err := write(ctx, tx, 0, states); err != nil {
			return 0, err
		}
		if err := changes(ctx, tx, pairs); err != nil {
			return 0, err
		}
	}
	// The rolling windows ending today.
	windowKeys := pairs
	if allWindows {
		windowKeys = keys{}
		if _, err := tx.Exec(ctx, "DELETE FROM agg_port WHERE window_days > 0"); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM agg_class WHERE window_days > 0"); err != nil {
			return 0, err
		}
	} else {
		for _, t := range []string{"agg_port", "agg_class"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+t+` x USING unnest($1::bigint[], $2::smallint[]) AS k(asn, family)
				WHERE x.window_days > 0 AND x.asn = k.asn AND x.family = k.family`, pairs.asns, pairs.families); err != nil {
				return 0, err
			}
		}
	}
	n := 0
	for _, w := range d.cfg.Windows {
		end := today.Add(Day)
		states, err := d.derive(ctx, tx, end.Add(-time.Duration(w)*Day), end, false, windowKeys)
		if err != nil {
			return 0, err
		}
		if err := write(ctx, tx, w, states); err != nil {
			return 0, err
		}
		n = max(n, len(states))
	}
	return n, d.markRefreshed(ctx, tx, today)
}

// markRefreshed records that the rollups are current: their windows end
// on today, and they hold every result ingested until now.
func (d *Dataset) markRefreshed(ctx context.Context, tx pgx.Tx, today time.Time) error {
	_, err := tx.Exec(ctx, "UPDATE agg_state SET as_of = $1, refreshed_at = $2", today, d.now())
	return err
}

// changes rewrites the policy changes of the pairs k (every pair when k is
// the zero keys) from their timelines: a change is a classified day whose
// class differs from the previous classified day's; INSUFFICIENT_DATA days
// neither change nor interrupt a class.
func changes(ctx context.Context, tx pgx.Tx, k keys) error {
	where, args := "", []any{}
	if !k.all() {
		if len(k.asns) == 0 {
			return nil
		}
		where = " JOIN unnest($1::bigint[], $2::smallint[]) AS k(asn, family) USING (asn, family)"
		args = append(args, k.asns, k.families)
		if _, err := tx.Exec(ctx, "DELETE FROM policy_changes p USING unnest($1::bigint[], $2::smallint[]) AS k(asn, family) WHERE p.asn = k.asn AND p.family = k.family", args...); err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, "SELECT asn, family, day, class FROM agg_class"+where+
		" WHERE window_days = 0 AND class <> $"+fmt.Sprint(len(args)+1)+" ORDER BY asn, family, day",
		append(args, int16(pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA))...)
	if err != nil {
		return err
	}
	var out [][]any
	var asn, prevASN int64
	var family, prevFamily, class, prevClass int16 = 0, -1, 0, 0
	var day time.Time
	_, err = pgx.ForEachRow(rows, []any{&asn, &family, &day, &class}, func() error {
		if asn == prevASN && family == prevFamily && class != prevClass {
			out = append(out, []any{asn, family, day, prevClass, class})
		}
		prevASN, prevFamily, prevClass = asn, family, class
		return nil
	})
	if err != nil {
		return err
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"policy_changes"}, []string{"asn", "family", "day", "from_class", "to_class"}, pgx.CopyFromRows(out))
	return err
}

// Run refreshes every interval until ctx ends, logging what it did and
// every failure (a failed refresh leaves its keys for the next), and
// telling observe, if not nil, about each refresh.
func (d *Dataset) Run(ctx context.Context, every time.Duration, log *slog.Logger, observe func(RefreshStats, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := d.Refresh(ctx)
		if observe != nil && !errors.Is(err, context.Canceled) {
			observe(st, err)
		}
		switch {
		case errors.Is(err, context.Canceled):
			return
		case err != nil:
			log.Error("refreshing the dataset's rollups failed; will retry", "err", err)
		case st.Keys > 0 || st.Windows:
			log.Info("dataset rollups refreshed", "keys", st.Keys, "days", st.Days, "all_windows", st.Windows, "took", st.Took.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
