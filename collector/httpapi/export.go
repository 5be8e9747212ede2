package httpapi

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// exportRow is one published result, as every export format writes it. It
// is built from a PublicResult only, which carries a prefix and never a
// full address.
type exportRow struct {
	ResultID   string    `json:"result_id" parquet:"result_id"`
	MeasuredAt time.Time `json:"measured_at" parquet:"measured_at,timestamp(microsecond)"`
	ASN        uint32    `json:"asn" parquet:"asn"`
	Country    string    `json:"country" parquet:"country,dict"`
	Prefix     string    `json:"prefix" parquet:"prefix,dict"`
	Family     string    `json:"family" parquet:"family,dict"`
	Port       uint32    `json:"port" parquet:"port"`
	Verdict    string    `json:"verdict" parquet:"verdict,dict"`
	Failure    string    `json:"failure" parquet:"failure,dict"`
	RefmtaID   string    `json:"refmta_id" parquet:"refmta_id,dict"`
	AgentID    string    `json:"agent_id" parquet:"agent_id,dict"`
	// RefMTACharged: charged to the reference MTA's side, left out of the
	// network's shares.
	RefMTACharged bool `json:"refmta_charged" parquet:"refmta_charged"`
	// OneOff: contributed once with `op25b-agent check --submit`, as
	// SubmissionID; counted at most once per prefix in the shares.
	OneOff       bool   `json:"one_off" parquet:"one_off"`
	SubmissionID string `json:"submission_id" parquet:"submission_id"`
}

// columns are the CSV header, in the order of exportRow.
var columns = []string{"result_id", "measured_at", "asn", "country", "prefix", "family", "port", "verdict", "failure", "refmta_id", "agent_id", "refmta_charged", "one_off", "submission_id"}

func rowOf(r *pb.PublicResult) exportRow {
	return exportRow{
		ResultID: r.GetResultId(),
		// Every format carries microseconds, as Parquet does.
		MeasuredAt:    r.GetMeasuredAt().AsTime().UTC().Truncate(time.Microsecond),
		ASN:           r.GetAsn(),
		Country:       r.GetCountry(),
		Prefix:        r.GetPrefix(),
		Family:        dataset.FamilyName(r.GetFamily()),
		Port:          r.GetPort(),
		Verdict:       dataset.VerdictName(r.GetVerdict()),
		Failure:       r.GetFailure(),
		RefmtaID:      r.GetRefmtaId(),
		AgentID:       r.GetAgentId(),
		RefMTACharged: r.GetRefmtaCharged(),
		OneOff:        r.GetOneOff(),
		SubmissionID:  r.GetSubmissionId(),
	}
}

func (r exportRow) record() []string {
	return []string{
		r.ResultID, r.MeasuredAt.Format(time.RFC3339Nano), strconv.FormatUint(uint64(r.ASN), 10),
		r.Country, r.Prefix, r.Family, strconv.FormatUint(uint64(r.Port), 10),
		r.Verdict, r.Failure, r.RefmtaID, r.AgentID, strconv.FormatBool(r.RefMTACharged),
		strconv.FormatBool(r.OneOff), r.SubmissionID,
	}
}

// encoder writes batches of results in one format. Nothing reaches the
// response before the first batch, so that an export refused by the query
// layer is still answered with a JSON error.
type encoder interface {
	write([]*pb.PublicResult) error
	close() error
}

type exportFormat struct {
	contentType string
	encoder     func(io.Writer) encoder
}

var exportFormats = map[string]exportFormat{
	"csv":     {"text/csv; charset=utf-8; header=present", newCSV},
	"ndjson":  {"application/x-ndjson", newNDJSON},
	"parquet": {"application/vnd.apache.parquet", newParquet},
}

const (
	// exportIdle is how long an export may go without sending a batch
	// before the connection is dropped, so that a stalled client cannot
	// hold an export slot forever.
	exportIdle = time.Minute
	// exportBusyRetry is the Retry-After of an export refused because
	// too many run.
	exportBusyRetry = "10"
	rowGroupRows    = 64 << 10
)

func (s *server) export(w http.ResponseWriter, r *http.Request, q *query) error {
	start, end := q.time("start"), q.time("end")
	req := &pb.ExportResultsRequest{Asn: q.asn(), Country: q.country(), Family: q.family()}
	name := q.v.Get("format")
	if name == "" {
		name = "csv"
	}
	format, ok := exportFormats[name]
	if !ok {
		q.keep(fmt.Errorf("%w: format %s: want csv, ndjson or parquet", dataset.ErrInvalid, dataset.Quote(name)))
	}
	if q.err != nil {
		return q.err
	}
	if !start.Before(end) {
		return fmt.Errorf("%w: start %s must come before end %s", dataset.ErrInvalid, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	req.Range = &pb.TimeRange{Start: timestamppb.New(start), End: timestamppb.New(end)}

	h := w.Header()
	h.Set("Content-Type", format.contentType)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="op25b-results-%s-%s.%s"`, fileStamp(start), fileStamp(end), name))
	h.Set("Cache-Control", cacheControl)
	if r.Method == http.MethodHead {
		return nil
	}
	select {
	case s.exports <- struct{}{}:
		defer func() { <-s.exports }()
	default:
		h.Set("Retry-After", exportBusyRetry)
		writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", fmt.Sprintf("%d exports are running, the most this server allows; try again shortly", cap(s.exports)))
		return nil
	}

	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(exportIdle))
	out := &countingWriter{w: w}
	enc := format.encoder(out)
	err := s.q.ExportResults(r.Context(), req, func(batch []*pb.PublicResult) error {
		if err := enc.write(batch); err != nil {
			return err
		}
		if out.n > 0 { // flushing nothing would commit the status line
			rc.Flush()
		}
		rc.SetWriteDeadline(time.Now().Add(exportIdle))
		return nil
	})
	if err == nil {
		err = enc.close()
	}
	if err == nil || out.n == 0 {
		return err
	}
	// The status line is gone: only a broken transfer tells the client that
	// the file is truncated.
	if r.Context().Err() == nil {
		s.log.Error("dataset API: export aborted", "bytes", out.n, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// fileStamp writes t for a file name: the day, or the time without colons.
func fileStamp(t time.Time) string {
	if t.Equal(dataset.Today(t)) {
		return t.UTC().Format(time.DateOnly)
	}
	return t.UTC().Format("2006-01-02T150405Z")
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type csvEncoder struct {
	w      *csv.Writer
	header bool
}

func newCSV(w io.Writer) encoder { return &csvEncoder{w: csv.NewWriter(w)} }

func (e *csvEncoder) write(batch []*pb.PublicResult) error {
	if !e.header {
		e.w.Write(columns)
		e.header = true
	}
	for _, r := range batch {
		e.w.Write(rowOf(r).record())
	}
	e.w.Flush()
	return e.w.Error()
}

func (e *csvEncoder) close() error { return e.write(nil) }

type ndjsonEncoder struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newNDJSON(w io.Writer) encoder {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &ndjsonEncoder{w: bw, enc: enc}
}

func (e *ndjsonEncoder) write(batch []*pb.PublicResult) error {
	for _, r := range batch {
		if err := e.enc.Encode(rowOf(r)); err != nil {
			return err
		}
	}
	return e.w.Flush()
}

func (e *ndjsonEncoder) close() error { return e.w.Flush() }

// parquetEncoder buffers a row group (rowGroupRows rows) before writing it.
type parquetEncoder struct {
	w    *parquet.GenericWriter[exportRow]
	rows []exportRow
}

func newParquet(w io.Writer) encoder {
	pw := parquet.NewGenericWriter[exportRow](w, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(rowGroupRows))
	pw.SetKeyValueMetadata("op25b.schema_version", dataset.SchemaVersion)
	pw.SetKeyValueMetadata("op25b.licence", dataset.Licence)
	return &parquetEncoder{w: pw}
}

func (e *parquetEncoder) write(batch []*pb.PublicResult) error {
	e.rows = e.rows[:0]
	for _, r := range batch {
		e.rows = append(e.rows, rowOf(r))
	}
	_, err := e.w.Write(e.rows)
	return err
}

func (e *parquetEncoder) close() error { return e.w.Close() }
