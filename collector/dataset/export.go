package dataset

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// exportBatch is how many results ExportResults hands over at a time.
const exportBatch = 1000

// ExportResults streams the public form of the raw results measured in the
// request's range, in result_id order (UUIDv7: measurement time order). A
// result carries its /24 or /48 prefix and ASN, never the full address.
// An error from emit stops the export and is returned.
func (d *Dataset) ExportResults(ctx context.Context, req *pb.ExportResultsRequest, emit func([]*pb.PublicResult) error) error {
	r := req.GetRange()
	if !r.GetStart().IsValid() || !r.GetEnd().IsValid() {
		return invalid("range: start and end are required")
	}
	start, end := r.GetStart().AsTime(), r.GetEnd().AsTime()
	switch {
	case !end.After(start):
		return invalid("range: the end must come after the start")
	case end.Sub(start) > time.Duration(d.cfg.MaxExportDays)*Day:
		return invalid("range: %.1f days is longer than the %d days one export may cover; split it", end.Sub(start).Hours()/24, d.cfg.MaxExportDays)
	}
	family, err := familyDB(req.GetFamily())
	if err != nil {
		return err
	}
	cc, err := ParseCountry(req.GetCountry())
	if err != nil {
		return err
	}
	rows, err := d.read.Query(ctx, publicResultSQL+`
		WHERE r.measured_at >= $1 AND r.measured_at < $2 AND ($3::bigint = 0 OR r.asn = $3) AND ($4 = 0 OR r.family = $4)
			AND ($5 = '' OR n.country = $5)
		ORDER BY r.result_id`, start, end, int64(req.GetAsn()), family, cc)
	if err != nil {
		return fmt.Errorf("dataset: export: %w", err)
	}
	return emitBatches(rows, emit)
}

// DayResults streams the public form of the raw results measured on the
// UTC day that starts at day, as ExportResults does, ordered by
// measured_at then result_id, so that the same results come in the same
// order: what the daily archives (collector/archive) write. A day whose
// raw results were retired has none.
func (d *Dataset) DayResults(ctx context.Context, day time.Time, emit func([]*pb.PublicResult) error) error {
	start := Today(day)
	if !start.Equal(day) {
		return invalid("day: %s is not a UTC midnight", day.Format(time.RFC3339Nano))
	}
	rows, err := d.read.Query(ctx, publicResultSQL+`
		WHERE r.measured_at >= $1 AND r.measured_at < $2
		ORDER BY r.measured_at, r.result_id`, start, start.Add(Day))
	if err != nil {
		return fmt.Errorf("dataset: results of %s: %w", start.Format(time.DateOnly), err)
	}
	return emitBatches(rows, emit)
}

// emitBatches hands the rows of publicResultSQL to emit, exportBatch at a
// time, and closes rows.
func emitBatches(rows pgx.Rows, emit func([]*pb.PublicResult) error) error {
	batch := make([]*pb.PublicResult, 0, exportBatch)
	err := scanPublicResults(rows, func(p *pb.PublicResult, _ string) error {
		batch = append(batch, p)
		if len(batch) < exportBatch {
			return nil
		}
		err := emit(batch)
		batch = make([]*pb.PublicResult, 0, exportBatch)
		return err
	})
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		return emit(batch)
	}
	return nil
}

// publicResultSQL selects the public columns of results r (with the AS
// name and country of n) that scanPublicResults reads; a WHERE clause
// follows.
const publicResultSQL = `SELECT r.result_id::text, r.measured_at, coalesce(r.asn, 0), coalesce(n.country, ''), coalesce(n.name, ''),
		coalesce(r.prefix::text, ''), r.family, r.port, r.verdict, r.failure, r.refmta_id, r.agent_id, r.refmta_charged,
		coalesce(r.submission_id::text, '')
	FROM results r LEFT JOIN as_names n ON n.asn = r.asn`

// scanPublicResults calls each with every row of publicResultSQL and its
// AS name, and closes rows. An error from each stops the scan and is
// returned as it is.
func scanPublicResults(rows pgx.Rows, each func(p *pb.PublicResult, asName string) error) error {
	defer rows.Close()
	for rows.Next() {
		var p pb.PublicResult
		var at time.Time
		var asn int64
		var fam, verdict int16
		var port int32
		var name string
		if err := rows.Scan(&p.ResultId, &at, &asn, &p.Country, &name, &p.Prefix, &fam, &port, &verdict, &p.Failure, &p.RefmtaId,
			&p.AgentId, &p.RefmtaCharged, &p.SubmissionId); err != nil {
			return fmt.Errorf("dataset: public results: %w", err)
		}
		p.MeasuredAt, p.Asn, p.Family, p.Port, p.Verdict = timestamppb.New(at), uint32(asn), familyPB(fam), uint32(port), pb.Verdict(verdict)
		p.OneOff = p.SubmissionId != ""
		if err := each(&p, name); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dataset: public results: %w", err)
	}
	return nil
}
