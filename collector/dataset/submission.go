package dataset

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// GetSubmission returns a one-off contribution (`op25b-agent check
// --submit`) as everyone may see it: the prefixes and ASNs it measured
// from, never the address, and its public results.
//
// One the replica does not have yet is read from the primary: a
// submission is read back as soon as it is stored, to answer its POST, and
// its page is opened at once, before a lagging replica has replayed it.
func (d *Dataset) GetSubmission(ctx context.Context, id string) (*pb.Submission, error) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return nil, invalid("submission id %s is not a UUIDv7", Quote(id))
	}
	s, err := submission(ctx, d.read, u)
	if errors.Is(err, ErrNotFound) && d.read != d.pool {
		s, err = submission(ctx, d.pool, u)
	}
	return s, err
}

// submission reads the submission u from db.
func submission(ctx context.Context, db *pgxpool.Pool, u uuid.UUID) (*pb.Submission, error) {
	var s pb.Submission
	var submitted, from, to time.Time
	err := db.QueryRow(ctx, `SELECT submission_id::text, submitted_at, measured_from, measured_to, agent_version
		FROM submissions WHERE submission_id = $1`, u).Scan(&s.SubmissionId, &submitted, &from, &to, &s.AgentVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no submission %s", ErrNotFound, u)
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: submission: %w", err)
	}
	s.SubmittedAt, s.MeasuredAt = timestamppb.New(submitted), timestamppb.New(from)
	rows, err := db.Query(ctx, publicResultSQL+`
		WHERE r.submission_id = $1 AND r.measured_at BETWEEN $2 AND $3
		ORDER BY r.result_id`, u, from, to)
	if err != nil {
		return nil, fmt.Errorf("dataset: submission: %w", err)
	}
	nets := map[pb.AddressFamily]*pb.SubmissionNetwork{}
	err = scanPublicResults(rows, func(p *pb.PublicResult, asName string) error {
		s.Results = append(s.Results, p)
		// The family's network: the first attributed result's.
		if n := nets[p.Family]; n == nil || n.Prefix == "" && p.Prefix != "" {
			nets[p.Family] = &pb.SubmissionNetwork{Family: p.Family, Prefix: p.Prefix, Asn: p.Asn, AsName: asName, Country: p.Country}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: submission: %w", err)
	}
	for _, f := range []pb.AddressFamily{pb.AddressFamily_ADDRESS_FAMILY_IPV4, pb.AddressFamily_ADDRESS_FAMILY_IPV6} {
		if n := nets[f]; n != nil {
			s.Networks = append(s.Networks, n)
		}
	}
	return &s, nil
}
