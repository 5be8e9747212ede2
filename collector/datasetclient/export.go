package datasetclient

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Export formats.
const (
	CSV     = "csv"
	NDJSON  = "ndjson"
	Parquet = "parquet"
)

// ExportRequest selects the public raw results to export.
type ExportRequest struct {
	// Start and End bound the measurement times, End excluded; the
	// collector caps the range (GetInfoResponse.max_export_days).
	Start, End time.Time
	ASN        uint32
	Country    string
	Family     pb.AddressFamily
	// Format is CSV (the default), NDJSON or Parquet.
	Format string
}

// Progress is how far an export has come.
type Progress struct {
	// Bytes written to the destination.
	Bytes int64
	// Rows and LastMeasuredAt (the measured_at of the last row seen; rows
	// come in time order) are counted for CSV and NDJSON, not Parquet.
	Rows           int64
	LastMeasuredAt time.Time
	// Fraction of the export done, from 0 to 1: the part of the time range
	// before LastMeasuredAt, or for Parquet the part of the announced
	// length received; -1 when unknown; 1 once the export is complete.
	Fraction float64
}

// Export streams the results req selects to w, calling progress (if not
// nil) after every piece it writes, and returns the final progress. Rows
// are counted as they pass, never buffered. An export the collector or
// the network breaks off is an error, never a short success: the caller
// should then discard what was written.
func (c *Client) Export(ctx context.Context, req ExportRequest, w io.Writer, progress func(Progress)) (Progress, error) {
	format := req.Format
	if format == "" {
		format = CSV
	}
	if format != CSV && format != NDJSON && format != Parquet {
		return Progress{}, fmt.Errorf("export format %q: want csv, ndjson or parquet", format)
	}
	if !req.End.After(req.Start) {
		return Progress{}, errors.New("export: the end must come after the start")
	}
	q := url.Values{}
	q.Set("start", formatTime(req.Start))
	q.Set("end", formatTime(req.End))
	q.Set("format", format)
	if req.ASN != 0 {
		q.Set("asn", strconv.FormatUint(uint64(req.ASN), 10))
	}
	if req.Country != "" {
		q.Set("country", req.Country)
	}
	if f := dataset.FamilyName(req.Family); f != "" {
		q.Set("family", f)
	}

	// A stalled transfer is cut after c.timeout without a byte; the
	// whole of a long export may take as long as it needs.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(c.timeout, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	stallErr := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("export: nothing received for %v: %w", c.timeout, err)
		}
		return err
	}

	resp, err := c.do(ctx, "export", q, "*/*")
	if err != nil {
		return Progress{}, stallErr(err)
	}
	defer resp.Body.Close()

	counter := &rowCounter{csv: format == CSV, col: -1}
	p := Progress{Fraction: -1}
	span := req.End.Sub(req.Start)
	update := func() {
		p.Rows, p.LastMeasuredAt = counter.rows, counter.last
		switch {
		case format != Parquet && !p.LastMeasuredAt.IsZero():
			p.Fraction = min(1, max(0, float64(p.LastMeasuredAt.Sub(req.Start))/float64(span)))
		case format == Parquet && resp.ContentLength > 0:
			p.Fraction = min(1, float64(p.Bytes)/float64(resp.ContentLength))
		}
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			watchdog.Reset(c.timeout)
			if _, err := w.Write(buf[:n]); err != nil {
				return p, fmt.Errorf("export: writing: %w", err)
			}
			p.Bytes += int64(n)
			if format != Parquet {
				counter.Write(buf[:n])
			}
			update()
			if progress != nil {
				progress(p)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// io.ErrUnexpectedEOF: the body ended before its announced
			// length or its last chunk.
			return p, stallErr(fmt.Errorf("export broken off: %w", rerr))
		}
	}
	counter.end()
	update()
	p.Fraction = 1
	if progress != nil {
		progress(p)
	}
	return p, nil
}

// formatTime writes a midnight as a day, the way people give ranges.
func formatTime(t time.Time) string {
	t = t.UTC()
	if t.Equal(dataset.Today(t)) {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339Nano)
}

// rowCounter counts the rows of a CSV (with its header) or NDJSON stream
// written to it in pieces of any size, and parses the measured_at of the
// last complete row of each piece only. It keeps only the unfinished
// record between pieces, cut at maxRecord.
type rowCounter struct {
	csv     bool
	inQuote bool // CSV: inside a quoted field, where a newline is data
	header  bool // CSV: the header has been read
	col     int  // CSV: index of measured_at, -1 if unknown
	rows    int64
	last    time.Time
	tail    []byte
	cut     bool     // tail was cut
	rows0   [][]byte // scratch: the rows of one piece
}

const maxRecord = 64 << 10

func (r *rowCounter) Write(p []byte) {
	r.rows0 = r.rows0[:0] // the complete rows in p
	start := 0            // where the current record starts in p
	for i, b := range p {
		switch {
		case b == '"' && r.csv:
			r.inQuote = !r.inQuote // "" inside a quoted field toggles twice
		case b == '\n' && !r.inQuote:
			rec := p[start:i]
			if len(r.tail) > 0 || r.cut {
				rec = append(r.tail, rec...)
				r.tail, r.cut = r.tail[:0], false
			}
			if r.record(rec) {
				r.rows0 = append(r.rows0, rec)
			}
			start = i + 1
		}
	}
	// The last row tells the time; rows before it only if it cannot.
	for i := len(r.rows0) - 1; i >= 0 && !r.parseTime(r.rows0[i]); i-- {
	}
	r.keep(p[start:])
}

// keep adds the unfinished record's bytes to the tail.
func (r *rowCounter) keep(b []byte) {
	if room := maxRecord - len(r.tail); len(b) > room {
		b, r.cut = b[:max(room, 0)], true
	}
	r.tail = append(r.tail, b...)
}

// end counts a last record without its newline.
func (r *rowCounter) end() {
	if rec := r.tail; len(rec) > 0 || r.cut {
		r.tail = nil
		if r.record(rec) {
			r.parseTime(rec)
		}
	}
}

// record counts rec and reports whether it is a row.
func (r *rowCounter) record(rec []byte) bool {
	if len(bytes.TrimSpace(rec)) == 0 {
		return false
	}
	if r.csv && !r.header {
		r.header = true
		if f, err := csv.NewReader(bytes.NewReader(rec)).Read(); err == nil {
			for i, name := range f {
				if name == "measured_at" {
					r.col = i
				}
			}
		}
		return false
	}
	r.rows++
	return true
}

// parseTime reads the measured_at of rec into r.last, reporting whether
// it could.
func (r *rowCounter) parseTime(rec []byte) bool {
	var s string
	if r.csv {
		f, err := csv.NewReader(bytes.NewReader(rec)).Read()
		if err != nil || r.col < 0 || r.col >= len(f) {
			return false
		}
		s = f[r.col]
	} else {
		var row struct {
			Snake string `json:"measured_at"`
			Camel string `json:"measuredAt"`
		}
		if json.Unmarshal(rec, &row) != nil {
			return false
		}
		s = row.Snake + row.Camel
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return false
	}
	r.last = t
	return true
}
