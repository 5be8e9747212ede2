package httpapi

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/resultfile"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

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
		e.w.Write(resultfile.Columns)
		e.header = true
	}
	for _, r := range batch {
		e.w.Write(resultfile.RowOf(r).Record())
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
		if err := e.enc.Encode(resultfile.RowOf(r)); err != nil {
			return err
		}
	}
	return e.w.Flush()
}

func (e *ndjsonEncoder) close() error { return e.w.Flush() }

// parquetEncoder is the Parquet file the daily archives write too.
type parquetEncoder struct{ *resultfile.Parquet }

func newParquet(w io.Writer) encoder { return parquetEncoder{resultfile.NewParquet(w)} }

func (e parquetEncoder) write(batch []*pb.PublicResult) error { return e.Write(batch) }

func (e parquetEncoder) close() error { return e.Close() }
