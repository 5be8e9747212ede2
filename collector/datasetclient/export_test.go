package datasetclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/op25b/observatory/collector/datasetclient"
	"github.com/op25b/observatory/collector/datasetclient/datasetclienttest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

var (
	march1 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	march8 = time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
)

func TestExport(t *testing.T) {
	rows := datasetclienttest.ExportRows(march1, march8, 40)
	last := rows[len(rows)-1].MeasuredAt.AsTime()
	for _, format := range []string{"csv", "ndjson"} {
		for _, batch := range []int{1, 7, 40} { // rows per flushed batch
			s := datasetclienttest.Start(t)
			s.ExportRows, s.Chunk = len(rows), batch
			var out bytes.Buffer
			var seen []datasetclient.Progress
			p, err := newClient(t, s.URL).Export(context.Background(), datasetclient.ExportRequest{
				Start: march1, End: march8, ASN: 64500, Country: "JP", Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, Format: format,
			}, &out, func(p datasetclient.Progress) { seen = append(seen, p) })
			if err != nil {
				t.Fatalf("Export(%s, batches of %d): %v", format, batch, err)
			}
			if p.Rows != 40 || !p.LastMeasuredAt.Equal(last) || p.Bytes != int64(out.Len()) || p.Fraction != 1 {
				t.Errorf("Export(%s, batches of %d) = %+v; want 40 rows, last %v, %d bytes, fraction 1", format, batch, p, last, out.Len())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if format == "csv" && (len(lines) != 41 || lines[0] != datasetclienttest.ExportHeader) {
				t.Errorf("CSV export has %d lines starting %q; want the header and 40 rows", len(lines), lines[0])
			}
			if format == "ndjson" {
				var r struct {
					Prefix string `json:"prefix"`
					Port   int    `json:"port"`
				}
				if err := json.Unmarshal([]byte(lines[39]), &r); err != nil || r.Prefix != "192.0.2.0/24" || r.Port != 25 {
					t.Errorf("NDJSON line 40 = %q, %v", lines[39], err)
				}
			}
			// Progress grows, and its fraction follows the time of the rows.
			for i := 1; i < len(seen); i++ {
				if seen[i].Bytes < seen[i-1].Bytes || seen[i].Rows < seen[i-1].Rows || seen[i].Fraction < seen[i-1].Fraction {
					t.Fatalf("progress went back: %+v then %+v", seen[i-1], seen[i])
				}
			}
			for _, p := range seen[:len(seen)-1] {
				want := -1.0
				if !p.LastMeasuredAt.IsZero() {
					want = float64(p.LastMeasuredAt.Sub(march1)) / float64(march8.Sub(march1))
				}
				if p.Fraction != want {
					t.Errorf("progress %+v; want fraction %v (of the time range)", p, want)
				}
			}
			q := s.Requests()[0]
			if want := "/api/v1/export?asn=64500&country=JP&end=2026-03-08&family=ipv4&format=" + format + "&start=2026-03-01"; q != want {
				t.Errorf("request %q; want %q", q, want)
			}
		}
	}
}

// The collector streams Parquet without a Content-Length: progress is in
// bytes only.
func TestExportParquet(t *testing.T) {
	s := datasetclienttest.Start(t)
	var out bytes.Buffer
	var seen []datasetclient.Progress
	p, err := newClient(t, s.URL).Export(context.Background(), datasetclient.ExportRequest{Start: march1, End: march8, Format: "parquet"},
		&out, func(p datasetclient.Progress) { seen = append(seen, p) })
	if err != nil || p.Rows != 0 || p.Bytes != int64(out.Len()) || p.Fraction != 1 {
		t.Fatalf("Export(parquet) = %+v, %v; want %d bytes, no rows counted", p, err, out.Len())
	}
	f, err := parquet.OpenFile(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil || f.NumRows() != 5 {
		t.Fatalf("Export(parquet) wrote no Parquet file of 5 rows: %v", err)
	}
	for _, p := range seen[:len(seen)-1] {
		if p.Fraction != -1 {
			t.Errorf("progress %+v; want fraction -1 (unknown)", p)
		}
	}
}

// A transfer broken off mid-body is an error, never a short success.
func TestExportBroken(t *testing.T) {
	for _, format := range []string{"csv", "ndjson"} {
		s := datasetclienttest.Start(t)
		s.ExportRows, s.BreakAfter = 10, 4
		var out bytes.Buffer
		p, err := newClient(t, s.URL).Export(context.Background(), datasetclient.ExportRequest{Start: march1, End: march8, Format: format}, &out, nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) || err.Error() != "export broken off: unexpected EOF" {
			t.Errorf("Export(%s) of a broken transfer = %+v, %v; want an unexpected EOF", format, p, err)
		}
		if p.Rows != 4 {
			t.Errorf("Export(%s) counted %d rows before the break; want 4", format, p.Rows)
		}
	}
}

// The collector sends a Parquet file's first bytes only with its first row
// group (or its end): an export failing before then is a plain error.
func TestExportParquetFails(t *testing.T) {
	s := datasetclienttest.Start(t)
	s.ExportRows, s.BreakAfter = 10, 4
	var out bytes.Buffer
	p, err := newClient(t, s.URL).Export(context.Background(), datasetclient.ExportRequest{Start: march1, End: march8, Format: "parquet"}, &out, nil)
	var ae *datasetclient.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != 500 || p.Bytes != 0 || out.Len() != 0 {
		t.Errorf("Export(parquet) failing = %+v, %v, %d bytes written; want the collector's 500 and nothing written", p, err, out.Len())
	}
}

func TestExportErrors(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	_, err := c.Export(ctx, datasetclient.ExportRequest{Start: march1, End: march1.AddDate(0, 2, 0)}, io.Discard, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "collector said 400 INVALID_ARGUMENT: ") {
		t.Errorf("Export of two months = %v; want the collector's 400", err)
	}
	if _, err := c.Export(ctx, datasetclient.ExportRequest{Start: march8, End: march1}, io.Discard, nil); err == nil {
		t.Errorf("Export of a reversed range succeeded")
	}
	if _, err := c.Export(ctx, datasetclient.ExportRequest{Start: march1, End: march8, Format: "xlsx"}, io.Discard, nil); err == nil {
		t.Errorf("Export as xlsx succeeded")
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("%d requests; want 1 (bad requests caught before sending)", n)
	}
}

// A transfer that stops moving is cut after the timeout, however long
// the export as a whole may take.
func TestExportStalled(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 { // slow but moving: 3 × 60ms > the timeout
			w.Write([]byte("x\n"))
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	c := newClient(t, ts.URL, datasetclient.WithTimeout(150*time.Millisecond))
	p, err := c.Export(context.Background(), datasetclient.ExportRequest{Start: march1, End: march8, Format: "ndjson"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "nothing received for 150ms") || p.Bytes != 6 {
		t.Errorf("Export from a stalled server = %+v, %v; want the 6 bytes sent, then a stall error", p, err)
	}
}
