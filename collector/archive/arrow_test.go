package archive_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/resultfile"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// TestArchiveArrow reads a day's file back with Apache Arrow's Parquet
// reader, not the writer's library, and checks it against the database:
// the row count, the schema metadata, and each row's id, time, ASN,
// prefix (a /24 or /48, never an address), port and verdict, in order.
func TestArchiveArrow(t *testing.T) {
	ctx := context.Background()
	s, d := datasettest.Open(t, datasettest.NewWorld())
	dir := t.TempDir()
	run(t, newArchiver(s, d, dir), archive.Options{})
	day := mustDay(finished[0])
	e, ok := manifest(t, dir).Entry(day)
	if !ok {
		t.Fatalf("no entry for %s", finished[0])
	}

	f, err := os.Open(filepath.Join(dir, e.Path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		t.Fatalf("Arrow cannot open %s: %v", e.Path, err)
	}
	defer pf.Close()
	if pf.NumRows() != e.Rows {
		t.Errorf("Arrow reads %d rows; the manifest says %d", pf.NumRows(), e.Rows)
	}
	meta := pf.MetaData().KeyValueMetadata()
	for k, want := range map[string]string{resultfile.MetaSchemaVersion: dataset.SchemaVersion, resultfile.MetaLicence: dataset.Licence} {
		if got := meta.FindValue(k); got == nil || *got != want {
			t.Errorf("metadata %s = %v; want %q", k, got, want)
		}
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 10}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(ctx)
	if err != nil {
		t.Fatalf("Arrow cannot read %s: %v", e.Path, err)
	}
	defer tbl.Release()
	for i, name := range resultfile.Columns {
		if got := tbl.Schema().Field(i).Name; got != name {
			t.Errorf("column %d is %q; want %q", i, got, name)
		}
	}
	if ts, ok := tbl.Schema().Field(1).Type.(*arrow.TimestampType); !ok || ts.Unit != arrow.Microsecond || ts.TimeZone != "UTC" {
		t.Errorf("measured_at is %s; want timestamp[us, tz=UTC]", tbl.Schema().Field(1).Type)
	}

	type row struct {
		id, prefix, verdict string
		at                  time.Time
		asn                 int64
		port                int64
	}
	var got []row
	tr := array.NewTableReader(tbl, 1<<10)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		str := func(col int, i int) string { return rec.Column(col).ValueStr(i) }
		for i := range int(rec.NumRows()) {
			got = append(got, row{id: str(0, i), prefix: str(4, i), verdict: str(7, i),
				at:   rec.Column(1).(*array.Timestamp).Value(i).ToTime(arrow.Microsecond),
				asn:  int64(rec.Column(2).(*array.Uint32).Value(i)),
				port: int64(rec.Column(6).(*array.Uint32).Value(i))})
		}
	}
	if err := tr.Err(); err != nil {
		t.Fatal(err)
	}

	rows, err := s.Pool.Query(ctx, `SELECT result_id::text, prefix::text, verdict, measured_at, asn, port FROM results
		WHERE measured_at >= $1 AND measured_at < $2 ORDER BY measured_at, result_id`, day, day.Add(dataset.Day))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var want []row
	for rows.Next() {
		var r row
		var v int16
		if err := rows.Scan(&r.id, &r.prefix, &v, &r.at, &r.asn, &r.port); err != nil {
			t.Fatal(err)
		}
		r.verdict, r.at = dataset.VerdictName(pb.Verdict(v)), r.at.UTC().Truncate(time.Microsecond)
		want = append(want, r)
	}
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("Arrow read %d rows; the database holds %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v; want %+v", i, got[i], want[i])
		}
		if p, err := netip.ParsePrefix(got[i].prefix); err != nil || p != p.Masked() || p.Bits() != map[bool]int{true: 24, false: 48}[p.Addr().Is4()] {
			t.Errorf("row %d: prefix %q; want a /24 or /48 network", i, got[i].prefix)
		}
	}
}
