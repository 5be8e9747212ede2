package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The raw results of a day can be retired once a daily archive holds them
// (collector/archive): the day's partition of results is detached and
// dropped, and the rollups' tallies of that day stay. A day whose tallies
// exist but whose partition does not is a retired day: RebuildTallies
// keeps its tallies, as nothing could count them again.

// DayCount is how many results are stored for one UTC day.
type DayCount struct {
	Day     time.Time // UTC midnight
	Results int64
}

// ResultsPerDay counts the results stored for each UTC day from from to
// to (exclusive) that has any, in day order. It reads the per-reference-
// MTA tallies (agg_refmta_day), which ingest updates in the transaction
// that stores the results and which count every result once, so that it
// costs a small index scan, not a scan of the days' results.
func (s *Store) ResultsPerDay(ctx context.Context, from, to time.Time) ([]DayCount, error) {
	rows, err := s.Pool.Query(ctx, `SELECT day, sum(n_open + n_blocked + n_intercepted + n_inconclusive)::bigint
		FROM agg_refmta_day WHERE day >= $1 AND day < $2 GROUP BY day HAVING sum(n_open + n_blocked + n_intercepted + n_inconclusive) > 0
		ORDER BY day`, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("store: results per day: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DayCount, error) {
		var c DayCount
		err := r.Scan(&c.Day, &c.Results)
		c.Day = c.Day.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: results per day: %w", err)
	}
	return out, nil
}

// RawDays returns the UTC days that have a partition of raw results, in
// day order.
func (s *Store) RawDays(ctx context.Context) ([]time.Time, error) {
	days, err := rawDays(ctx, s.Pool)
	if err != nil {
		return nil, fmt.Errorf("store: raw days: %w", err)
	}
	return days, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func rawDays(ctx context.Context, q querier) ([]time.Time, error) {
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'results'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var days []time.Time
	for _, n := range names {
		if d, err := time.Parse("20060102", strings.TrimPrefix(n, "results_")); err == nil && strings.HasPrefix(n, "results_") {
			days = append(days, d)
		}
	}
	return days, nil
}

// ErrRowsDiffer says that a day's raw results are not the ones its archive
// holds: results arrived after it was written.
var ErrRowsDiffer = errors.New("the stored results differ from the archive's")

// retireLockTimeout bounds the wait for the locks a retirement needs, so
// that a long export holding the day's partition delays the retirement to
// the next run rather than queue ingest behind it.
const retireLockTimeout = "5s"

// RetireDay detaches and drops the partition of raw results of day,
// provided it holds exactly archived rows (the count of the archive that
// keeps them; ErrRowsDiffer otherwise). Nothing is changed when it
// returns an error. The tallies of the day stay. A day with no partition
// is retired already: RetireDay returns nil.
//
// Only days ingest refuses results of (older than ingest's maximum age)
// may be retired: a result of a retired day would find no partition
// (this process's cache says it exists) and be refused with an error.
func (s *Store) RetireDay(ctx context.Context, day time.Time, archived int64) error {
	name, _, _ := partitionDay("results", day.UTC())
	ident := pgx.Identifier{name}.Sanitize()
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+retireLockTimeout+"'"); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || !exists {
			return err
		}
		// No insert into the day from here on, so that the count is
		// what is dropped.
		if _, err := tx.Exec(ctx, "LOCK TABLE "+ident+" IN SHARE MODE"); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&n); err != nil {
			return err
		}
		if n != archived {
			return fmt.Errorf("%w: %s holds %d results, the archive %d", ErrRowsDiffer, name, n, archived)
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE results DETACH PARTITION "+ident); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DROP TABLE "+ident)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: retire %s: %w", day.UTC().Format(time.DateOnly), err)
	}
	s.mu.Lock()
	delete(s.partitions, name)
	s.mu.Unlock()
	return nil
}

// TryLock takes the session advisory lock key on a connection of its own
// unless another session holds it (ok false). unlock releases it and the
// connection; a lost connection releases it too.
func (s *Store) TryLock(ctx context.Context, key int64) (unlock func(), ok bool, err error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("store: lock: %w", err)
		}
		return nil, false, nil
	}
	return func() {
		// A fresh context: the caller's may have ended, and the lock must
		// not stay with the pooled connection.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			conn.Conn().Close(ctx) // closing the session releases the lock
		}
		conn.Release()
	}, true, nil
}
