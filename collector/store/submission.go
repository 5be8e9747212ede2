package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// submissionLock is the advisory lock key that serialises one-off
// submissions ("op25bs" in ASCII), so that two replays of one round sent
// at once cannot both pass the check for an earlier copy.
const submissionLock int64 = 0x6f7032356273

// ReplayWindow is how far before a submission's earliest result the
// collector looks for the nonces it carries: a submission's results are at
// most an hour old and their statements within minutes of them, so an
// earlier use of a nonce that a statement could vouch for is in it.
const ReplayWindow = 2 * time.Hour

// Submission is a one-off contribution (`op25b-agent check --submit`) as
// stored.
type Submission struct {
	ID           string // UUIDv7, the collector's
	RoundID      string
	Client       netip.Addr // restricted: the submitter's address
	AgentVersion string
}

// ReplayError says that a submission, or part of it, was stored before.
type ReplayError struct {
	// Earlier is the submission that holds the round, when one does.
	Earlier string
	What    string
}

func (e *ReplayError) Error() string { return e.What }

// ErrReplayed matches every *ReplayError with errors.Is.
var ErrReplayed = errors.New("already submitted")

// Is lets errors.Is(err, ErrReplayed) match.
func (e *ReplayError) Is(target error) bool { return target == ErrReplayed }

// InsertSubmission stores a one-off contribution and its results (whose
// SubmissionID must be sub.ID) in one transaction, or nothing: a round
// already submitted, a result already stored, or the nonce of an OPEN
// result already used by a stored OPEN result is a *ReplayError.
func (s *Store) InsertSubmission(ctx context.Context, sub Submission, rs []Result) error {
	if len(rs) == 0 {
		return errors.New("store: insert submission: no results")
	}
	times := make([]time.Time, len(rs))
	ids := make([]string, len(rs))
	var nonces [][]byte
	from, to := rs[0].MeasuredAt, rs[0].MeasuredAt
	for i, r := range rs {
		if r.SubmissionID != sub.ID {
			return fmt.Errorf("store: insert submission: result %s belongs to submission %q", r.ID, r.SubmissionID)
		}
		times[i], ids[i] = r.MeasuredAt, r.ID
		if r.MeasuredAt.Before(from) {
			from = r.MeasuredAt
		}
		if r.MeasuredAt.After(to) {
			to = r.MeasuredAt
		}
		if len(r.Nonce) > 0 && r.Verdict == 1 { // OPEN: see migration 0006
			nonces = append(nonces, r.Nonce)
		}
	}
	if err := s.ensurePartitions(ctx, "results", times); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", submissionLock); err != nil {
			return err
		}
		var earlier string
		err := tx.QueryRow(ctx, "SELECT submission_id::text FROM submissions WHERE round_id = $1", sub.RoundID).Scan(&earlier)
		switch {
		case err == nil:
			return &ReplayError{Earlier: earlier, What: fmt.Sprintf("round %s was submitted before, as %s", sub.RoundID, earlier)}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var id string
		err = tx.QueryRow(ctx, `SELECT result_id::text FROM results
			WHERE result_id = ANY($1::uuid[]) AND measured_at BETWEEN $2 AND $3 LIMIT 1`, ids, from, to).Scan(&id)
		switch {
		case err == nil:
			return &ReplayError{What: fmt.Sprintf("result %s is stored already", id)}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		err = tx.QueryRow(ctx, `SELECT result_id::text FROM results
			WHERE nonce = ANY($1) AND verdict = 1 AND measured_at >= $2 LIMIT 1`, nonces, from.Add(-ReplayWindow)).Scan(&id)
		switch {
		case err == nil:
			return &ReplayError{What: fmt.Sprintf("a nonce of this round is stored already, with result %s: a round's nonces are used once", id)}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO submissions (submission_id, round_id, client, agent_version, measured_from, measured_to, results)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, sub.ID, sub.RoundID, sub.Client, sub.AgentVersion, from, to, len(rs)); err != nil {
			return err
		}
		n, err := insertResults(ctx, tx, rs)
		if err != nil {
			return err
		}
		if n != int64(len(rs)) {
			// Stored meanwhile by an enrolled agent's upload, which does
			// not take the lock: as replayed, and nothing is kept.
			return &ReplayError{What: fmt.Sprintf("%d of the round's %d results are stored already", int64(len(rs))-n, len(rs))}
		}
		return nil
	})
	var replay *ReplayError
	if errors.As(err, &replay) {
		return replay
	}
	if err != nil {
		return fmt.Errorf("store: insert submission: %w", err)
	}
	return nil
}
