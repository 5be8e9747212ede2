package httpapi

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/resultfile"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

const exportMarch = "/api/v1/export?start=2026-03-01&end=2026-03-08"

// wantRecords is exportResults as the CSV export must write them.
var wantRecords = [][]string{
	{"019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c01", "2026-03-01T00:14:03.512345Z", "64500", "JP", "192.0.2.0/24", "ipv4", "25", "BLOCKED_TIMEOUT", "timeout", refmta, agentA, "true", "false", ""},
	{"019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c02", "2026-03-01T00:14:03.6Z", "64500", "JP", "192.0.2.0/24", "ipv4", "587", "OPEN", "", refmta, agentA, "false", "false", ""},
	{"019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c03", "2026-03-01T00:14:04Z", "64500", "JP", "2001:db8:4a00::/48", "ipv6", "25", "OPEN", "", refmta, "", "false", "true", submission},
	{"019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c04", "2026-03-02T09:30:00.000001Z", "64501", "JP", "198.51.100.0/24", "ipv4", "25", "INTERCEPTED", "proof_missing", refmta, agentC, "false", "false", ""},
	{"019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c05", "2026-03-07T23:59:59.999999Z", "64501", "JP", "198.51.100.0/24", "ipv4", "465", "INCONCLUSIVE", `control_unreachable, "quoted"`, refmta, agentC, "false", "false", ""},
}

// wantRows is wantRecords as typed rows.
func wantRows(t *testing.T) []resultfile.Row {
	var rows []resultfile.Row
	for _, r := range wantRecords {
		at, err := time.Parse(time.RFC3339Nano, r[1])
		asn, err2 := strconv.ParseUint(r[2], 10, 32)
		port, err3 := strconv.ParseUint(r[6], 10, 32)
		if err != nil || err2 != nil || err3 != nil {
			t.Fatalf("bad fixture %q", r)
		}
		rows = append(rows, resultfile.Row{ResultID: r[0], MeasuredAt: at, ASN: uint32(asn), Country: r[3], Prefix: r[4], Family: r[5],
			Port: uint32(port), Verdict: r[7], Failure: r[8], RefmtaID: r[9], AgentID: r[10], RefMTACharged: r[11] == "true",
			OneOff: r[12] == "true", SubmissionID: r[13]})
	}
	return rows
}

func exportOK(t *testing.T, h http.Handler, target, contentType, filename string) []byte {
	t.Helper()
	w := get(h, target)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s = %d; want 200\n%s", target, w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":        contentType,
		"Content-Disposition": `attachment; filename="` + filename + `"`,
		"Cache-Control":       "public, max-age=60",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("GET %s: %s = %q; want %q", target, k, got, want)
		}
	}
	return w.Body.Bytes()
}

func TestExportCSV(t *testing.T) {
	body := exportOK(t, newHandler(&fake{}, Options{}), exportMarch, "text/csv; charset=utf-8; header=present", "op25b-results-2026-03-01-2026-03-08.csv")
	got, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("reading the CSV back: %v\n%s", err, body)
	}
	if want := append([][]string{resultfile.Columns}, wantRecords...); !reflect.DeepEqual(got, want) {
		t.Errorf("CSV export = %q; want %q", got, want)
	}
}

func TestExportNDJSON(t *testing.T) {
	body := exportOK(t, newHandler(&fake{}, Options{}), exportMarch+"&format=ndjson", "application/x-ndjson", "op25b-results-2026-03-01-2026-03-08.ndjson")
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != len(wantRecords) {
		t.Fatalf("NDJSON export has %d lines; want %d\n%s", len(lines), len(wantRecords), body)
	}
	for i, line := range lines {
		// Keys in column order, each value as its column's JSON type.
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var keys []string
		var values []string
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %d is not an object: %s", i, line)
		}
		for dec.More() {
			k, _ := dec.Token()
			v, err := dec.Token()
			if err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			keys = append(keys, k.(string))
			switch v := v.(type) {
			case string:
				values = append(values, v)
			case json.Number:
				values = append(values, "#"+v.String())
			case bool:
				values = append(values, strconv.FormatBool(v))
			default:
				t.Fatalf("line %d: %s is %T, not flat", i, k, v)
			}
		}
		want := append([]string(nil), wantRecords[i]...)
		want[2], want[6] = "#"+want[2], "#"+want[6] // asn and port are numbers
		if !reflect.DeepEqual(keys, resultfile.Columns) || !reflect.DeepEqual(values, want) {
			t.Errorf("line %d = %s; want keys %q with values %q", i, line, resultfile.Columns, want)
		}
	}
}

func TestExportParquet(t *testing.T) {
	body := exportOK(t, newHandler(&fake{}, Options{}), exportMarch+"&format=parquet&country=JP", "application/vnd.apache.parquet", "op25b-results-2026-03-01-2026-03-08.parquet")
	f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("not a Parquet file: %v", err)
	}
	var names []string
	for _, field := range f.Schema().Fields() {
		names = append(names, field.Name())
	}
	if !reflect.DeepEqual(names, resultfile.Columns) {
		t.Errorf("Parquet columns = %q; want %q", names, resultfile.Columns)
	}
	at, _ := f.Schema().Lookup("measured_at")
	if got, want := at.Node.Type().LogicalType().String(), "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)"; got != want {
		t.Errorf("measured_at is %s; want %s", got, want)
	}
	for k, want := range map[string]string{"op25b.schema_version": dataset.SchemaVersion, "op25b.licence": dataset.Licence} {
		if got, _ := f.Lookup(k); got != want {
			t.Errorf("Parquet metadata %s = %q; want %q", k, got, want)
		}
	}
	if got, want := readParquet(t, body), wantRows(t); !reflect.DeepEqual(got, want) {
		t.Errorf("Parquet export = %+v\nwant %+v", got, want)
	}
}

func readParquet(t *testing.T, body []byte) []resultfile.Row {
	t.Helper()
	r := parquet.NewGenericReader[resultfile.Row](bytes.NewReader(body))
	defer r.Close()
	rows := make([]resultfile.Row, r.NumRows())
	if n, err := r.Read(rows); n != len(rows) || (err != nil && err != io.EOF) {
		t.Fatalf("reading the Parquet export back: %d of %d rows: %v", n, len(rows), err)
	}
	for i := range rows {
		rows[i].MeasuredAt = rows[i].MeasuredAt.UTC()
	}
	return rows
}

func TestExportEmpty(t *testing.T) {
	h := newHandler(&fake{results: []*pb.PublicResult{}}, Options{})
	if got := string(exportOK(t, h, exportMarch, "text/csv; charset=utf-8; header=present", "op25b-results-2026-03-01-2026-03-08.csv")); got != strings.Join(resultfile.Columns, ",")+"\n" {
		t.Errorf("empty CSV export = %q; want the header alone", got)
	}
	if got := exportOK(t, h, exportMarch+"&format=ndjson", "application/x-ndjson", "op25b-results-2026-03-01-2026-03-08.ndjson"); len(got) != 0 {
		t.Errorf("empty NDJSON export = %q; want nothing", got)
	}
	body := exportOK(t, h, exportMarch+"&format=parquet", "application/vnd.apache.parquet", "op25b-results-2026-03-01-2026-03-08.parquet")
	if rows := readParquet(t, body); len(rows) != 0 {
		t.Errorf("empty Parquet export has %d rows", len(rows))
	}
}

// TestExportColumns keeps the three formats on one list of columns.
func TestExportColumns(t *testing.T) {
	rt := reflect.TypeFor[resultfile.Row]()
	if rt.NumField() != len(resultfile.Columns) {
		t.Fatalf("resultfile.Row has %d fields for %d columns", rt.NumField(), len(resultfile.Columns))
	}
	for i, col := range resultfile.Columns {
		f := rt.Field(i)
		if js := f.Tag.Get("json"); js != col {
			t.Errorf("field %s: json tag %q; want %q", f.Name, js, col)
		}
		if pq, _, _ := strings.Cut(f.Tag.Get("parquet"), ","); pq != col {
			t.Errorf("field %s: parquet column %q; want %q", f.Name, pq, col)
		}
	}
	if got := resultfile.RowOf(exportResults[0]).Record(); len(got) != len(resultfile.Columns) {
		t.Errorf("a CSV record has %d fields; want %d", len(got), len(resultfile.Columns))
	}
}

// TestExportNoFullAddress checks that an export carries prefixes only:
// every address-like token of the text formats is a /24 or /48, and so is
// every prefix of the Parquet rows. resultfile.Row is built from PublicResult
// alone, which has no field for a full address.
func TestExportNoFullAddress(t *testing.T) {
	h := newHandler(&fake{}, Options{})
	for _, format := range []string{"csv", "ndjson"} {
		body := get(h, exportMarch+"&format="+format).Body.String()
		tokens := strings.FieldsFunc(body, func(r rune) bool {
			return !strings.ContainsRune("0123456789abcdefABCDEF:./", r)
		})
		var prefixes int
		for _, tok := range tokens {
			if a, err := netip.ParseAddr(tok); err == nil {
				t.Errorf("%s export contains the address %s", format, a)
			}
			if p, err := netip.ParsePrefix(tok); err == nil {
				prefixes++
				if p.Bits() != map[bool]int{true: 24, false: 48}[p.Addr().Is4()] || p != p.Masked() {
					t.Errorf("%s export contains %s; want /24 or /48 networks only", format, p)
				}
			}
		}
		if prefixes != len(wantRecords) {
			t.Errorf("%s export: %d prefixes; want %d", format, prefixes, len(wantRecords))
		}
	}
	body := get(h, exportMarch+"&format=parquet").Body.Bytes()
	for _, row := range readParquet(t, body) {
		if p, err := netip.ParsePrefix(row.Prefix); err != nil || p != p.Masked() {
			t.Errorf("Parquet row prefix %q is not a network", row.Prefix)
		}
		for _, s := range []string{row.ResultID, row.Country, row.Failure, row.RefmtaID, row.AgentID} {
			if _, err := netip.ParseAddr(s); err == nil {
				t.Errorf("Parquet row carries the address %s", s)
			}
		}
	}
}

func TestExportHead(t *testing.T) {
	f := &fake{}
	w := do(newHandler(f, Options{}), request{method: "HEAD", target: exportMarch + "&format=parquet"})
	if w.Code != http.StatusOK || w.Header().Get("Content-Disposition") == "" || w.Body.Len() != 0 {
		t.Errorf("HEAD export = %d %v %q; want 200 with the headers only", w.Code, w.Header(), w.Body)
	}
	if f.request() != nil {
		t.Errorf("HEAD ran the export")
	}
}

func TestExportFileName(t *testing.T) {
	w := get(newHandler(&fake{}, Options{}), "/api/v1/export?start=2026-03-01T06:00:00Z&end=2026-03-08&format=ndjson")
	if got, want := w.Header().Get("Content-Disposition"), `attachment; filename="op25b-results-2026-03-01T060000Z-2026-03-08.ndjson"`; got != want {
		t.Errorf("Content-Disposition = %q; want %q", got, want)
	}
}

func TestExportErrors(t *testing.T) {
	tooLong := fmt.Errorf("%w: an export covers at most 31 days", dataset.ErrInvalid)
	for _, tc := range []struct {
		fake   *fake
		target string
		code   int
		status string
	}{
		{&fake{}, "/api/v1/export", 400, "INVALID_ARGUMENT"},
		{&fake{}, "/api/v1/export?start=2026-03-01", 400, "INVALID_ARGUMENT"},
		{&fake{}, "/api/v1/export?end=2026-03-01", 400, "INVALID_ARGUMENT"},
		{&fake{}, "/api/v1/export?start=yesterday&end=2026-03-01", 400, "INVALID_ARGUMENT"},
		{&fake{}, "/api/v1/export?start=2026-03-08&end=2026-03-01", 400, "INVALID_ARGUMENT"},
		{&fake{}, "/api/v1/export?start=2026-03-01&end=2026-03-01", 400, "INVALID_ARGUMENT"},
		{&fake{}, exportMarch + "&format=xlsx", 400, "INVALID_ARGUMENT"},
		{&fake{}, exportMarch + "&family=ipx", 400, "INVALID_ARGUMENT"},
		{&fake{}, exportMarch + "&asn=ASx", 400, "INVALID_ARGUMENT"},
		{&fake{}, exportMarch + "&country=Japan", 400, "INVALID_ARGUMENT"},
		{&fake{}, exportMarch + "&window=30d", 400, "INVALID_ARGUMENT"},
		// Refused or failed by the query layer before the first byte: a
		// plain JSON error, whatever the format.
		{&fake{failBefore: tooLong}, exportMarch, 400, "INVALID_ARGUMENT"},
		{&fake{failBefore: errBroken}, exportMarch + "&format=ndjson", 500, "INTERNAL"},
		// Parquet sends nothing before a row group is complete.
		{&fake{failAfter: 1}, exportMarch + "&format=parquet", 500, "INTERNAL"},
	} {
		checkError(t, tc.target, get(newHandler(tc.fake, Options{}), tc.target), tc.code, tc.status)
	}
}

// TestExportAbort checks that an export failing after its first byte
// breaks the transfer instead of ending a truncated file cleanly.
func TestExportAbort(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(newHandler(&fake{failAfter: 1}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	t.Cleanup(srv.Close)
	for _, format := range []string{"csv", "ndjson"} {
		resp, err := http.Get(srv.URL + exportMarch + "&format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: status %d with %d bytes; want 200 and the first batch", format, resp.StatusCode, len(body))
		}
		if err == nil {
			t.Errorf("%s: a failed export ended cleanly after %d bytes:\n%s", format, len(body), body)
		}
	}
	srv.Close() // waits for the handlers: the log is complete
	if !strings.Contains(logs.String(), "export aborted") {
		t.Errorf("the aborted export was not logged; log:\n%s", logs.String())
	}
}

// TestExportBusy runs in a testing/synctest bubble: synctest.Wait returns
// once the first export is blocked inside the query layer, with no
// polling and no deadline to guess.
func TestExportBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fake{block: make(chan struct{})}
		h := newHandler(f, Options{MaxConcurrentExports: 1})
		first := make(chan int)
		go func() { first <- get(h, exportMarch).Code }()
		synctest.Wait()
		if f.request() == nil {
			t.Fatal("the first export is blocked before it reached the query layer")
		}
		w := get(h, exportMarch)
		checkError(t, "a second export", w, 429, "RESOURCE_EXHAUSTED")
		if ra := w.Header().Get("Retry-After"); ra == "" {
			t.Errorf("429 without Retry-After")
		}
		if w := get(h, "/api/v1/info"); w.Code != 200 {
			t.Errorf("other routes while an export runs = %d; want 200", w.Code)
		}
		close(f.block)
		if code := <-first; code != 200 {
			t.Errorf("the first export = %d; want 200", code)
		}
		if w := get(h, exportMarch); w.Code != 200 {
			t.Errorf("an export after the first ended = %d; want 200", w.Code)
		}
	})
}
