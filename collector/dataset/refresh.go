package dataset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/store"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// refreshLock is the advisory lock key that lets one collector replica at
// a time change the derived tables ("agg" in ASCII).
const refreshLock = 0x616767

// RefreshStats says what one refresh or rebuild did.
type RefreshStats struct {
	Skipped bool // another replica holds the lock
	Keys    int  // (asn, family) pairs whose rolling windows were recomputed
	Days    int  // (asn, family, day) timeline points recomputed
	// Windows says that the rolling windows were refreshed (RefreshWindows
	// ran), AllWindows that every one was recomputed (a new UTC day began,
	// or a rebuild).
	Windows, AllWindows bool
	// Deltas is how many tally rows the windows took in.
	Deltas int64
	// WindowsDue says, after RefreshDays, that the rolling windows still
	// end on an earlier day than today: a new UTC day began.
	WindowsDue bool
	// WindowsAt is when the rolling windows were last refreshed, on any
	// replica (zero: never), as RefreshDays read it.
	WindowsAt time.Time
	Results   int64
	Took      time.Duration
}

// add merges the stats of the second half of a refresh.
func (s RefreshStats) add(o RefreshStats) RefreshStats {
	s.Skipped = s.Skipped || o.Skipped
	s.Keys += o.Keys
	s.Days += o.Days
	s.Windows = s.Windows || o.Windows
	s.AllWindows = s.AllWindows || o.AllWindows
	s.Deltas += o.Deltas
	s.WindowsDue = o.WindowsDue
	if !o.WindowsAt.IsZero() {
		s.WindowsAt = o.WindowsAt
	}
	s.Took += o.Took
	return s
}

// Refresh brings every derived table up to date with the results ingested
// so far: RefreshDays, then RefreshWindows.
func (d *Dataset) Refresh(ctx context.Context) (RefreshStats, error) {
	st, err := d.RefreshDays(ctx)
	if err != nil {
		return st, err
	}
	w, err := d.RefreshWindows(ctx)
	return st.add(w), err
}

// RefreshDays brings the timeline up to date with the results ingested
// since it last ran: it recomputes the daily points they touched
// (agg_dirty) and the policy changes from the first of those days on.
// What it reads follows what was ingested, not the history. When nothing
// changed it only records that the daily points are current
// (agg_state.refreshed_at). When another replica is refreshing or
// rebuilding it skips (RefreshStats.Skipped) rather than wait: that one
// takes the results in.
func (d *Dataset) RefreshDays(ctx context.Context) (RefreshStats, error) {
	began := time.Now()
	var st RefreshStats
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if ok, err := tryLock(ctx, tx); err != nil || !ok {
			st.Skipped = !ok
			return err
		}
		today := Today(d.now())
		var asOf, windowsAt *time.Time
		if err := tx.QueryRow(ctx, "SELECT as_of, windows_at FROM agg_state").Scan(&asOf, &windowsAt); err != nil {
			return err
		}
		st.WindowsDue = asOf == nil || !asOf.Equal(today)
		if windowsAt != nil {
			st.WindowsAt = *windowsAt
		}
		// Marks committed after this statement stay for the next run.
		rows, err := tx.Query(ctx, "WITH d AS (DELETE FROM agg_dirty RETURNING asn, family, day) SELECT DISTINCT asn, family, day FROM d")
		if err != nil {
			return err
		}
		// Never the zero keys, which stand for every day.
		days := keys{asns: []int64{}, families: []int16{}, days: []time.Time{}}
		var asn int64
		var family int16
		var day time.Time
		_, err = pgx.ForEachRow(rows, []any{&asn, &family, &day}, func() error {
			days.asns = append(days.asns, asn)
			days.families = append(days.families, family)
			days.days = append(days.days, day)
			return nil
		})
		if err != nil {
			return err
		}
		st.Days = len(days.asns)
		if st.Days > 0 {
			if err := d.dailyPoints(ctx, tx, days); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, "UPDATE agg_state SET refreshed_at = $1", d.now())
		return err
	})
	st.Took = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("dataset: refresh daily points: %w", err)
	}
	return st, nil
}

// RefreshWindows brings the rolling windows up to date. It takes in the
// tally rows ingest added since it last ran (agg_delta): those of days
// inside a window are added to that window's sums (agg_agent_window), and
// the windows of the (asn, family) pairs they touched are recomputed from
// these sums, so that what it reads follows what was ingested, not the
// windows' length. The first run of a new UTC day recomputes the sums and
// every window from the daily tallies (AllWindows), as the windows moved
// on a day. It reads the deltas and the tallies in one snapshot, so that
// each delta is counted once whatever ingest commits meanwhile. It skips
// like RefreshDays.
func (d *Dataset) RefreshWindows(ctx context.Context) (RefreshStats, error) {
	began := time.Now()
	st := RefreshStats{Windows: true}
	err := pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if ok, err := tryLock(ctx, tx); err != nil || !ok {
			st.Skipped, st.Windows = !ok, false
			return err
		}
		today := Today(d.now())
		var asOf *time.Time
		if err := tx.QueryRow(ctx, "SELECT as_of FROM agg_state").Scan(&asOf); err != nil {
			return err
		}
		var err error
		if asOf == nil || !asOf.Equal(today) {
			st.AllWindows = true
			if err := tx.QueryRow(ctx, "WITH d AS (DELETE FROM agg_delta RETURNING 1) SELECT count(*) FROM d").Scan(&st.Deltas); err != nil {
				return err
			}
			st.Keys, err = d.windows(ctx, tx, today, keys{})
		} else {
			var pairs keys
			pairs, st.Deltas, err = d.foldDeltas(ctx, tx, today)
			if err != nil {
				return err
			}
			if len(pairs.asns) > 0 {
				st.Keys, err = d.windows(ctx, tx, today, pairs)
			}
		}
		if err != nil {
			return err
		}
		now := d.now()
		st.WindowsAt = now
		_, err = tx.Exec(ctx, "UPDATE agg_state SET as_of = $1, windows_at = $2", today, now)
		return err
	})
	st.Took = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("dataset: refresh windows: %w", err)
	}
	return st, nil
}

// tryLock takes the refresh lock for tx if no other replica holds it.
func tryLock(ctx context.Context, tx pgx.Tx) (bool, error) {
	var locked bool
	err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", refreshLock).Scan(&locked)
	return locked, err
}

// foldDeltas deletes the deltas tx can see, adds those of days inside each
// window ending today to agg_agent_window, and returns the (asn, family)
// pairs whose windows they changed and how many deltas it read.
func (d *Dataset) foldDeltas(ctx context.Context, tx pgx.Tx, today time.Time) (keys, int64, error) {
	windows := make([]int16, len(d.cfg.Windows))
	for i, w := range d.cfg.Windows {
		windows[i] = int16(w)
	}
	rows, err := tx.Query(ctx, `WITH gone AS (DELETE FROM agg_delta RETURNING *), sums AS (
	SELECT w.days AS window_days, g.asn, g.family, g.port, g.agent_id, g.prefix,
		sum(n_open) AS n_open, sum(n_blocked_timeout) AS n_blocked_timeout, sum(n_blocked_reset) AS n_blocked_reset,
		sum(n_blocked_unreachable) AS n_blocked_unreachable, sum(n_intercepted) AS n_intercepted,
		sum(n_tampered) AS n_tampered, sum(n_inconclusive) AS n_inconclusive, sum(n_charged) AS n_charged
	FROM gone g JOIN unnest($2::smallint[]) AS w(days) ON g.day <= $1::date AND g.day > $1::date - w.days
	GROUP BY 1, 2, 3, 4, 5, 6
), added AS (
	INSERT INTO agg_agent_window (window_days, asn, family, port, agent_id, prefix, `+store.CountColumns+`)
	SELECT * FROM sums ORDER BY 1, 2, 3, 4, 5, 6
	ON CONFLICT (window_days, asn, family, port, agent_id, prefix) DO UPDATE SET
		`+store.AddCounts("agg_agent_window")+`
)
SELECT p.asn, p.family, c.n FROM (SELECT count(*) AS n FROM gone) AS c
	LEFT JOIN (SELECT DISTINCT asn, family FROM sums) AS p ON true ORDER BY 1, 2`, today, windows)
	if err != nil {
		return keys{}, 0, err
	}
	pairs := keys{asns: []int64{}, families: []int16{}}
	var n int64
	var asn *int64
	var family *int16
	_, err = pgx.ForEachRow(rows, []any{&asn, &family, &n}, func() error {
		if asn != nil { // nil: no delta fell in a window
			pairs.asns = append(pairs.asns, *asn)
			pairs.families = append(pairs.families, *family)
		}
		return nil
	})
	return pairs, n, err
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
	st := RefreshStats{Windows: true, AllWindows: true}
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
		// policy_changes is left to changes(), which compares what it
		// deletes with what it finds to log the events.
		for _, q := range []string{"DELETE FROM agg_port", "DELETE FROM agg_class"} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		today := Today(d.now())
		if err := d.dailyPoints(ctx, tx, keys{}); err != nil {
			return err
		}
		log.Info("rebuild: timelines done", "elapsed", time.Since(began).Round(time.Millisecond))
		if st.Keys, err = d.windows(ctx, tx, today, keys{}); err != nil {
			return err
		}
		log.Info("rebuild: rolling windows done", "keys", st.Keys, "elapsed", time.Since(began).Round(time.Millisecond))
		_, err = tx.Exec(ctx, "UPDATE agg_state SET as_of = $1, refreshed_at = $2, windows_at = $2", today, d.now())
		return err
	})
	st.Took = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("dataset: rebuild: %w", err)
	}
	return st, nil
}

// dailyPoints rewrites the daily points of days (every day when days is the
// zero keys) and the policy changes of their (asn, family) pairs from the
// first of their days on.
func (d *Dataset) dailyPoints(ctx context.Context, tx pgx.Tx, days keys) error {
	var start, end time.Time
	since := keys{}
	if days.all() {
		var first, last *time.Time
		if err := tx.QueryRow(ctx, "SELECT min(day), max(day) FROM agg_agent_day").Scan(&first, &last); err != nil {
			return err
		}
		if first == nil {
			return changes(ctx, tx, since, d.now())
		}
		start, end = *first, last.Add(Day)
	} else {
		// The first dirty day of each pair, and the span of them all.
		start, end = days.days[0], days.days[0]
		first := map[[2]int64]int{}
		since = keys{asns: []int64{}, families: []int16{}, days: []time.Time{}}
		for i, day := range days.days {
			start, end = minTime(start, day), maxTime(end, day)
			p := [2]int64{days.asns[i], int64(days.families[i])}
			if j, ok := first[p]; !ok {
				first[p] = len(since.asns)
				since.asns = append(since.asns, days.asns[i])
				since.families = append(since.families, days.families[i])
				since.days = append(since.days, day)
			} else {
				since.days[j] = minTime(since.days[j], day)
			}
		}
		end = end.Add(Day)
		for _, t := range []string{"agg_port", "agg_class"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+t+` x USING unnest($1::bigint[], $2::smallint[], $3::date[]) AS k(asn, family, day)
				WHERE x.window_days = 0 AND x.asn = k.asn AND x.family = k.family AND x.day = k.day`, days.asns, days.families, days.days); err != nil {
				return err
			}
		}
	}
	states, err := d.derive(ctx, tx, start, end, daily, days)
	if err != nil {
		return err
	}
	if err := write(ctx, tx, 0, states); err != nil {
		return err
	}
	return changes(ctx, tx, since, d.now())
}

// windows rewrites the rolling windows ending today of the (asn, family)
// pairs k from agg_agent_window. With the zero keys it first recomputes
// agg_agent_window from the daily tallies, then every window.
func (d *Dataset) windows(ctx context.Context, tx pgx.Tx, today time.Time, k keys) (int, error) {
	if k.all() {
		windows := make([]int16, len(d.cfg.Windows))
		for i, w := range d.cfg.Windows {
			windows[i] = int16(w)
		}
		for _, q := range []string{"DELETE FROM agg_agent_window", "DELETE FROM agg_port WHERE window_days > 0", "DELETE FROM agg_class WHERE window_days > 0"} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return 0, err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO agg_agent_window (window_days, asn, family, port, agent_id, prefix, `+store.CountColumns+`)
	SELECT w.days, t.asn, t.family, t.port, t.agent_id, t.prefix, sum(n_open), sum(n_blocked_timeout), sum(n_blocked_reset),
		sum(n_blocked_unreachable), sum(n_intercepted), sum(n_tampered), sum(n_inconclusive), sum(n_charged)
	FROM agg_agent_day t JOIN unnest($2::smallint[]) AS w(days) ON t.day <= $1::date AND t.day > $1::date - w.days
	GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6`, today, windows); err != nil {
			return 0, err
		}
	} else {
		for _, t := range []string{"agg_port", "agg_class"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+t+` x USING unnest($1::bigint[], $2::smallint[]) AS k(asn, family)
				WHERE x.window_days > 0 AND x.asn = k.asn AND x.family = k.family`, k.asns, k.families); err != nil {
				return 0, err
			}
		}
	}
	n := 0
	for _, w := range d.cfg.Windows {
		end := today.Add(Day)
		states, err := d.derive(ctx, tx, end.Add(-time.Duration(w)*Day), end, window, k)
		if err != nil {
			return 0, err
		}
		if err := write(ctx, tx, w, states); err != nil {
			return 0, err
		}
		n = max(n, len(states))
	}
	return n, nil
}

// change is one row of policy_changes.
type change struct {
	asn      int64
	family   int16
	day      time.Time
	from, to int16
}

// key identifies a change by all its columns.
func (c change) key() [5]int64 {
	return [5]int64{c.asn, int64(c.family), c.day.Unix(), int64(c.from), int64(c.to)}
}

// changes rewrites the policy changes of the pairs in since from their
// timelines, from each pair's day in since on (every pair and day when
// since is the zero keys): a change is a classified day whose class
// differs from the previous classified day's; INSUFFICIENT_DATA days
// neither change nor interrupt a class. It logs in policy_change_events,
// seen at now, each change that was not there before and each one that is
// gone, so that the log is exactly as durable as the changes.
func changes(ctx context.Context, tx pgx.Tx, since keys, now time.Time) error {
	insufficient := int16(pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA)
	var rows pgx.Rows
	var err error
	if since.all() {
		rows, err = tx.Query(ctx, "DELETE FROM policy_changes RETURNING asn, family, day, from_class, to_class")
	} else {
		if len(since.asns) == 0 {
			return nil
		}
		rows, err = tx.Query(ctx, `DELETE FROM policy_changes p USING unnest($1::bigint[], $2::smallint[], $3::date[]) AS k(asn, family, since)
			WHERE p.asn = k.asn AND p.family = k.family AND p.day >= k.since
			RETURNING p.asn, p.family, p.day, p.from_class, p.to_class`, since.asns, since.families, since.days)
	}
	if err != nil {
		return err
	}
	gone := map[[5]int64]change{}
	var c change
	if _, err := pgx.ForEachRow(rows, []any{&c.asn, &c.family, &c.day, &c.from, &c.to}, func() error {
		gone[c.key()] = c
		return nil
	}); err != nil {
		return err
	}
	if since.all() {
		rows, err = tx.Query(ctx, "SELECT asn, family, day, class FROM agg_class WHERE window_days = 0 AND class <> $1 ORDER BY asn, family, day", insufficient)
	} else {
		// Each pair's last classified day before since, which a change
		// on or after it compares with, then its classified days since.
		rows, err = tx.Query(ctx, `SELECT k.asn, k.family, c.day, c.class
	FROM unnest($1::bigint[], $2::smallint[], $3::date[]) AS k(asn, family, since)
	CROSS JOIN LATERAL (
		(SELECT day, class FROM agg_class WHERE window_days = 0 AND asn = k.asn AND family = k.family
			AND day < k.since AND class <> $4 ORDER BY day DESC LIMIT 1)
		UNION ALL
		SELECT day, class FROM agg_class WHERE window_days = 0 AND asn = k.asn AND family = k.family
			AND day >= k.since AND class <> $4) AS c
	ORDER BY 1, 2, 3`, since.asns, since.families, since.days, insufficient)
	}
	if err != nil {
		return err
	}
	var out, events [][]any
	var asn, prevASN int64
	var family, prevFamily, class, prevClass int16 = 0, -1, 0, 0
	var day time.Time
	_, err = pgx.ForEachRow(rows, []any{&asn, &family, &day, &class}, func() error {
		if asn == prevASN && family == prevFamily && class != prevClass {
			c := change{asn: asn, family: family, day: day, from: prevClass, to: class}
			out = append(out, []any{asn, family, day, prevClass, class})
			if _, ok := gone[c.key()]; ok {
				delete(gone, c.key())
			} else {
				events = append(events, c.event(now, false))
			}
		}
		prevASN, prevFamily, prevClass = asn, family, class
		return nil
	})
	if err != nil {
		return err
	}
	if _, err = tx.CopyFrom(ctx, pgx.Identifier{"policy_changes"}, []string{"asn", "family", "day", "from_class", "to_class"}, pgx.CopyFromRows(out)); err != nil {
		return err
	}
	for _, k := range slices.SortedFunc(maps.Keys(gone), func(a, b [5]int64) int { return slices.Compare(a[:], b[:]) }) {
		events = append(events, gone[k].event(now, true))
	}
	if len(events) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"policy_change_events"}, []string{"asn", "family", "day", "from_class", "to_class", "retracted", "seen_at"},
		pgx.CopyFromRows(events)); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", EventsChannel)
	return err
}

// event is c's row of policy_change_events.
func (c change) event(seen time.Time, retracted bool) []any {
	return []any{c.asn, c.family, c.day, c.from, c.to, retracted, seen}
}

// Run refreshes the daily points every interval and the rolling windows at
// the first of these ticks that comes windowsEvery after their last
// refresh on any replica, or after UTC midnight, until ctx ends. It logs
// what it did and every failure (a failed refresh leaves its keys for the
// next) and tells observe, if not nil, about each refresh of either.
func (d *Dataset) Run(ctx context.Context, every, windowsEvery time.Duration, log *slog.Logger, observe func(RefreshStats, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := d.RefreshDays(ctx)
		if !d.report(st, err, log, observe) {
			return
		}
		if err == nil && !st.Skipped && windowsDue(st, d.now(), every, windowsEvery) {
			st, err := d.RefreshWindows(ctx)
			if !d.report(st, err, log, observe) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// windowsDue says whether the tick at now, after the refresh of the daily
// points st, refreshes the windows too: at the first tick of a new UTC
// day, and at the first tick windowsEvery after the tick of their last
// refresh. That refresh is stamped when it ends, after its tick but before
// the next, so the tick windowsEvery after it is the first that comes more
// than windowsEvery less one tick after the stamp: with equal cadences
// both refresh at every tick, not every other one.
func windowsDue(st RefreshStats, now time.Time, every, windowsEvery time.Duration) bool {
	return st.WindowsDue || now.Sub(st.WindowsAt) > windowsEvery-every
}

// report logs and observes one refresh, and says whether to go on.
func (d *Dataset) report(st RefreshStats, err error, log *slog.Logger, observe func(RefreshStats, error)) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if observe != nil {
		observe(st, err)
	}
	switch {
	case err != nil:
		log.Error("refreshing the dataset's rollups failed; will retry", "err", err)
	case st.Windows && (st.Keys > 0 || st.AllWindows):
		log.Info("dataset rolling windows refreshed", "keys", st.Keys, "deltas", st.Deltas, "all_windows", st.AllWindows, "took", st.Took.Round(time.Millisecond))
	case st.Days > 0:
		log.Info("dataset daily points refreshed", "days", st.Days, "took", st.Took.Round(time.Millisecond))
	}
	return true
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
