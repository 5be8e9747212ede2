package store

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sighting is a session a reference MTA saw; its full source address is
// restricted like a result's egress.
type Sighting struct {
	ID     string // UUIDv7
	SeenAt time.Time
	RefMTA string
	Nonce  []byte
	Source netip.Addr
	Port   uint16
	TLS    bool
}

var sightingColumns = []string{"sighting_id", "seen_at", "refmta_id", "nonce", "observed_source", "port", "tls"}

// InsertSightings stores ss exactly once, like InsertResults.
func (s *Store) InsertSightings(ctx context.Context, ss []Sighting) (inserted int64, err error) {
	if len(ss) == 0 {
		return 0, nil
	}
	times := make([]time.Time, len(ss))
	for i, x := range ss {
		times[i] = x.SeenAt
	}
	if err := s.ensurePartitions(ctx, "sightings", times); err != nil {
		return 0, err
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE sightings_staging (LIKE sightings) ON COMMIT DROP"); err != nil {
			return fmt.Errorf("staging table: %w", err)
		}
		rows := make([][]any, len(ss))
		for i, x := range ss {
			rows[i] = []any{x.ID, x.SeenAt, x.RefMTA, x.Nonce, x.Source, int32(x.Port), x.TLS}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sightings_staging"}, sightingColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		cols := strings.Join(sightingColumns, ", ")
		tag, err := tx.Exec(ctx, "INSERT INTO sightings ("+cols+") SELECT "+cols+" FROM sightings_staging ON CONFLICT DO NOTHING")
		inserted = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: insert sightings: %w", err)
	}
	return inserted, nil
}

// Uncorroborated lists results that claim OPEN in [from, to) for which no
// reference MTA reported a sighting of their nonce: an agent that says it
// reached a reference MTA that never saw it is flagged, not believed.
// Sightings arrive in batches, so callers leave a margin before to.
func (s *Store) Uncorroborated(ctx context.Context, from, to time.Time) (map[string][]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT r.agent_id, r.result_id::text FROM results r
		WHERE r.measured_at >= $1 AND r.measured_at < $2 AND r.verdict = 1
		AND NOT EXISTS (SELECT 1 FROM sightings s WHERE s.nonce = r.nonce
			AND s.seen_at >= $1 - interval '1 hour' AND s.seen_at < $2 + interval '1 hour')
		ORDER BY 1, 2`, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: uncorroborated: %w", err)
	}
	out := map[string][]string{}
	var agent, id string
	_, err = pgx.ForEachRow(rows, []any{&agent, &id}, func() error {
		out[agent] = append(out[agent], id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: uncorroborated: %w", err)
	}
	return out, nil
}
