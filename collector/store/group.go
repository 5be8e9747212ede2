package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Group commit: InsertResults calls that arrive while others are being
// committed are merged into one transaction, and each call returns when
// the COMMIT that holds its rows is done (or failed). An agent's batch is
// 200 results; a transaction of thousands costs per row a fraction of
// one of 200 (the fixed cost of a transaction, of the tally statement and
// of the commit's WAL flush is shared), which is how ingest approaches
// the limit of idempotent COPY (BENCHMARKS.md, "Collector").
const (
	// GroupRows bounds the rows of one merged transaction: beyond about
	// 10,000 the cost per row no longer falls, and one transaction's
	// failure would hold back more agents.
	GroupRows = 10000
	// groupCommitters is how many merged transactions run at once: one
	// keeps PostgreSQL busy while the next group gathers; more split the
	// groups without adding throughput on a small machine.
	groupCommitters = 2
	// commitTimeout bounds one merged transaction, which serves callers
	// with contexts of their own.
	commitTimeout = 2 * time.Minute
)

// insertCall is one InsertResults call waiting for its commit.
type insertCall struct {
	rs       []Result
	done     chan struct{}
	inserted int64
	err      error
}

// enqueue adds c to the calls waiting for a commit and starts a committer
// if fewer than groupCommitters run.
func (s *Store) enqueue(c *insertCall) {
	s.mu.Lock()
	s.queue = append(s.queue, c)
	start := s.committers < s.maxCommit
	if start {
		s.committers++
	}
	s.mu.Unlock()
	if start {
		go s.commitLoop()
	}
}

// commitLoop commits groups of waiting calls until none waits.
func (s *Store) commitLoop() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.committers--
			s.mu.Unlock()
			return
		}
		n, rows := 0, 0
		for n < len(s.queue) && (n == 0 || rows+len(s.queue[n].rs) <= GroupRows) {
			rows += len(s.queue[n].rs)
			n++
		}
		group := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.mu.Unlock()
		s.commitGroup(group)
	}
}

// commitGroup stores the rows of group in one transaction. When that
// fails and the group holds several calls, each is tried again on its own,
// so that one call whose rows cannot be stored fails alone.
func (s *Store) commitGroup(group []*insertCall) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var all []Result
	for _, c := range group {
		all = append(all, c.rs...)
	}
	var replayed map[string]bool
	var inserted int64
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var err error
		if inserted, err = insertResults(ctx, tx, all); err != nil {
			return err
		}
		if inserted < int64(len(all)) {
			if replayed, err = storedBefore(ctx, tx, all); err != nil {
				return err
			}
		}
		if inserted > 0 && s.notify.Load() {
			return notifyInserted(ctx, tx, all, replayed)
		}
		return nil
	})
	if err != nil && len(group) > 1 {
		s.log.Warn("a merged insert failed; storing its batches one by one", "batches", len(group), "results", len(all), "err", err)
		for _, c := range group {
			s.commitGroup([]*insertCall{c})
		}
		return
	}
	for _, c := range group {
		c.err = err
		if err == nil {
			c.inserted = int64(len(c.rs))
			for _, r := range c.rs {
				if replayed[r.ID] {
					c.inserted--
				}
			}
		}
		close(c.done)
	}
}

// storedBefore returns the ids among rs that an earlier transaction
// stored: the replayed ones. Rows this transaction inserted got its start
// time as received_at.
func storedBefore(ctx context.Context, tx pgx.Tx, rs []Result) (map[string]bool, error) {
	ids := make([]string, len(rs))
	from, to := rs[0].MeasuredAt, rs[0].MeasuredAt
	for i, r := range rs {
		ids[i] = r.ID
		if r.MeasuredAt.Before(from) {
			from = r.MeasuredAt
		}
		if r.MeasuredAt.After(to) {
			to = r.MeasuredAt
		}
	}
	rows, err := tx.Query(ctx, `SELECT result_id::text FROM results
		WHERE result_id = ANY($1::uuid[]) AND measured_at BETWEEN $2 AND $3 AND received_at <> now()`, ids, from, to)
	if err != nil {
		return nil, fmt.Errorf("replayed results: %w", err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("replayed results: %w", err)
	}
	out := make(map[string]bool, len(stored))
	for _, id := range stored {
		out[id] = true
	}
	return out, nil
}
