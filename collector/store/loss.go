package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SpoolLoss is one count of the results an agent lost before upload, by
// cause, as the agent keeps it on disk (agent/spool's Loss).
type SpoolLoss struct {
	// SpoolID names the count; "" for agents that report only their full
	// spool's drops since their start.
	SpoolID    string
	Full       int64 // the spool was at its bound
	NoSpace    int64 // the file system was full
	WriteError int64 // writing to the spool failed otherwise
	Corrupt    int64 // damaged records cut or skipped
}

// Total is the number of results lost, whatever the cause.
func (l SpoolLoss) Total() int64 { return l.Full + l.NoSpace + l.WriteError + l.Corrupt }

// counts lists the counts in the order of lossColumns.
func (l *SpoolLoss) counts() []*int64 {
	return []*int64{&l.Full, &l.NoSpace, &l.WriteError, &l.Corrupt}
}

// dest is counts for Scan.
func (l *SpoolLoss) dest() []any { return []any{&l.Full, &l.NoSpace, &l.WriteError, &l.Corrupt} }

const lossColumns = "lost_full, lost_no_space, lost_write_error, lost_corrupt"

// RecordSpoolLoss records what agent reported of one count and returns by
// how much each cause grew (SpoolID empty). The stored counts only grow: a
// report lower than they are (late, repeated, or from a spool restored
// from a copy) changes nothing, and a new count (a wiped spool) is kept
// beside the old ones, so that nothing an agent reports can erase what it
// reported before.
func (s *Store) RecordSpoolLoss(ctx context.Context, agent string, l SpoolLoss) (grew SpoolLoss, err error) {
	if l.Total() == 0 {
		return SpoolLoss{}, nil
	}
	// Agents that lost results report the same counts every minute: most
	// reports are news to nobody, and cost one read.
	var stored SpoolLoss
	err = s.Pool.QueryRow(ctx, "SELECT "+lossColumns+" FROM spool_loss WHERE agent_id = $1 AND spool_id = $2",
		agent, l.SpoolID).Scan(stored.dest()...)
	switch {
	case err == nil && growth(stored, l).Total() == 0:
		return SpoolLoss{}, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return SpoolLoss{}, fmt.Errorf("store: spool loss: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// The row locked before it is read, so that two collectors given
		// the same report at once count its growth once.
		if _, err := tx.Exec(ctx, "INSERT INTO spool_loss (agent_id, spool_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", agent, l.SpoolID); err != nil {
			return err
		}
		var old SpoolLoss
		if err := tx.QueryRow(ctx, "SELECT "+lossColumns+" FROM spool_loss WHERE agent_id = $1 AND spool_id = $2 FOR UPDATE",
			agent, l.SpoolID).Scan(old.dest()...); err != nil {
			return err
		}
		grew = growth(old, l)
		if grew.Total() == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE spool_loss SET lost_full = lost_full + $3, lost_no_space = lost_no_space + $4,
			lost_write_error = lost_write_error + $5, lost_corrupt = lost_corrupt + $6, increased_at = now()
			WHERE agent_id = $1 AND spool_id = $2`, agent, l.SpoolID, grew.Full, grew.NoSpace, grew.WriteError, grew.Corrupt)
		return err
	})
	if err != nil {
		return SpoolLoss{}, fmt.Errorf("store: spool loss: %w", err)
	}
	return grew, nil
}

// growth is by how much each count of reported exceeds stored.
func growth(stored, reported SpoolLoss) SpoolLoss {
	var g SpoolLoss
	for i, c := range g.counts() {
		*c = max(0, *reported.counts()[i]-*stored.counts()[i])
	}
	return g
}

// AgentLoss is what one agent reported losing before upload: the sums of
// its counts.
type AgentLoss struct {
	Agent, Label string
	Lost         SpoolLoss // SpoolID empty
	// Spools is the number of counts: more than one when its spool
	// directory was wiped or its count damaged.
	Spools int
	// Increased is when a count last grew.
	Increased time.Time
}

// AgentLosses returns the agents that reported losing results, the most
// first.
func (s *Store) AgentLosses(ctx context.Context) ([]AgentLoss, error) {
	rows, err := s.Pool.Query(ctx, `SELECT l.agent_id, p.label, sum(lost_full)::bigint, sum(lost_no_space)::bigint,
		sum(lost_write_error)::bigint, sum(lost_corrupt)::bigint, count(*), max(increased_at)
		FROM spool_loss l JOIN principals p ON p.principal_id = l.agent_id
		GROUP BY 1, 2 ORDER BY sum(lost_full + lost_no_space + lost_write_error + lost_corrupt) DESC, 1`)
	if err != nil {
		return nil, fmt.Errorf("store: agent losses: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AgentLoss, error) {
		var a AgentLoss
		err := r.Scan(append(append([]any{&a.Agent, &a.Label}, a.Lost.dest()...), &a.Spools, &a.Increased)...)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: agent losses: %w", err)
	}
	return out, nil
}
