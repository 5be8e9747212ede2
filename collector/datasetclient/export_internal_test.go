package datasetclient

import (
	"testing"
	"time"
)

func TestRowCounter(t *testing.T) {
	t1 := time.Date(2026, 3, 1, 0, 0, 5, 0, time.UTC)
	t2 := time.Date(2026, 3, 7, 23, 59, 59, 500_000_000, time.UTC)
	for _, tc := range []struct {
		name string
		csv  bool
		in   string
		rows int64
		last time.Time
	}{
		{"csv", true, "result_id,measured_at,asn\na,2026-03-01T00:00:05Z,1\nb,2026-03-07T23:59:59.5Z,1\n", 2, t2},
		{"csv without final newline", true, "result_id,measured_at\na,2026-03-01T00:00:05Z\nb,2026-03-07T23:59:59.5Z", 2, t2},
		{"csv CRLF and blank lines", true, "result_id,measured_at\r\n\r\na,2026-03-01T00:00:05Z\r\n\r\n", 1, t1},
		{"csv quoted newline", true, "failure,measured_at\n\"line\nbreak, \"\"quoted\"\"\",2026-03-01T00:00:05Z\nx,2026-03-07T23:59:59.5Z\n", 2, t2},
		{"csv measured_at elsewhere", true, "measured_at,x\n2026-03-01T00:00:05Z,1\n", 1, t1},
		{"csv without measured_at", true, "a,b\n1,2\n3,4\n", 2, time.Time{}},
		{"csv header only", true, "result_id,measured_at\n", 0, time.Time{}},
		{"ndjson", false, `{"result_id":"a","measured_at":"2026-03-01T00:00:05Z"}` + "\n" + `{"measured_at": "2026-03-07T23:59:59.5Z", "x": "\""}` + "\n", 2, t2},
		{"ndjson camelCase", false, `{"measuredAt":"2026-03-01T00:00:05Z"}` + "\n\n", 1, t1},
		{"ndjson bad time", false, `{"measured_at":"2026-03-01T00:00:05Z"}` + "\n" + `{"measured_at":"soon"}` + "\n", 2, t1},
		{"empty", false, "", 0, time.Time{}},
	} {
		// Whatever the pieces, the same count.
		for size := 1; size <= len(tc.in)+1; size++ {
			r := &rowCounter{csv: tc.csv, col: -1}
			for in := tc.in; in != ""; {
				n := min(size, len(in))
				r.Write([]byte(in[:n]))
				in = in[n:]
			}
			r.end()
			if r.rows != tc.rows || !r.last.Equal(tc.last) {
				t.Errorf("%s in pieces of %d: %d rows, last %v; want %d, %v", tc.name, size, r.rows, r.last, tc.rows, tc.last)
				break
			}
		}
	}
}

// An overlong record is counted, not kept.
func TestRowCounterLongRecord(t *testing.T) {
	r := &rowCounter{col: -1}
	long := make([]byte, 3*maxRecord)
	for i := range long {
		long[i] = 'x'
	}
	r.Write(long)
	r.Write(long)
	if len(r.tail) > maxRecord {
		t.Errorf("kept %d bytes of an unfinished record; want at most %d", len(r.tail), maxRecord)
	}
	r.Write([]byte("\n{\"measured_at\":\"2026-03-01T00:00:05Z\"}\n"))
	r.end()
	if r.rows != 2 || r.last.IsZero() {
		t.Errorf("after a long record and a short one: %d rows, last %v; want 2 and the short one's time", r.rows, r.last)
	}
}

func BenchmarkRowCounterCSV(b *testing.B) {
	row := []byte("0195000000000001,2026-03-01T00:00:05Z,64500,JP,192.0.2.0/24,ipv4,25,BLOCKED_TIMEOUT,generic_timeout_error,refmta-tokyo-1,k0001ef\n")
	piece := make([]byte, 0, 64<<10)
	for len(piece)+len(row) <= cap(piece) {
		piece = append(piece, row...)
	}
	b.SetBytes(int64(len(piece)))
	r := &rowCounter{csv: true, col: -1}
	r.Write([]byte("result_id,measured_at\n"))
	for b.Loop() {
		r.Write(piece)
	}
}
