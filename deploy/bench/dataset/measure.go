package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// warmup is how many untimed requests precede each timed series.
const warmup = 20

type client struct {
	base string
	http *http.Client
}

// get fetches path into body and returns how long the whole answer took.
func (c *client) get(ctx context.Context, path string, body io.Writer) (time.Duration, error) {
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return 0, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if _, err := io.Copy(body, resp.Body); err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	return time.Since(t0), nil
}

// message fetches path and decodes its JSON answer into m.
func (c *client) message(ctx context.Context, path string, m proto.Message) (time.Duration, error) {
	var b bytes.Buffer
	d, err := c.get(ctx, path, &b)
	if err != nil {
		return 0, err
	}
	if err := protojson.Unmarshal(b.Bytes(), m); err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	return d, nil
}

type bench struct {
	c    config
	w    *world
	pool *pgxpool.Pool
	api  *client
	now  time.Time
	// setNow moves the clock of the dataset and the API, and now.
	setNow func(time.Time)
	// sample are the ASNs whose timelines are measured.
	sample []uint32
}

// window is the span of ?window=30d.
func (b *bench) window() (start, end time.Time) {
	end = dataset.Today(b.now).Add(dataset.Day)
	return end.Add(-windowDays * dataset.Day), end
}

// series times n requests of path(i) after warmup untimed ones.
func (b *bench) series(ctx context.Context, n int, path func(i int) string) ([]time.Duration, error) {
	var out []time.Duration
	for i := range warmup + n {
		d, err := b.api.get(ctx, path(i), io.Discard)
		if err != nil {
			return nil, err
		}
		if i >= warmup {
			out = append(out, d)
		}
	}
	return out, nil
}

func emitLatency(name string, ds []time.Duration) {
	emit(name+"_p50_ms", ms(percentile(ds, 0.5)))
	emit(name+"_p99_ms", ms(percentile(ds, 0.99)))
}

// asnTable measures GET /api/v1/asns, plain and by country, then checks
// every page of the table against the plain SQL answer.
func (b *bench) asnTable(ctx context.Context) error {
	n := b.c.requests
	logf("ASN table: %d requests, then %d with a country", n, n)
	ds, err := b.series(ctx, n, func(int) string { return "/api/v1/asns?window=30d" })
	if err != nil {
		return err
	}
	emitLatency("asn_table", ds)
	ds, err = b.series(ctx, n, func(int) string { return "/api/v1/asns?window=30d&page_size=500" })
	if err != nil {
		return err
	}
	emitLatency("asn_table_500", ds)
	byCountry := map[string]int{}
	top := ""
	for _, a := range b.w.asns {
		byCountry[a.country]++
		if byCountry[a.country] > byCountry[top] {
			top = a.country
		}
	}
	ds, err = b.series(ctx, n, func(int) string { return "/api/v1/asns?window=30d&country=" + top })
	if err != nil {
		return err
	}
	emitLatency("asn_table_country", ds)
	emit("asn_table_country", top)
	var first pb.ListASNsResponse
	if _, err := b.api.message(ctx, "/api/v1/asns?window=30d", &first); err != nil {
		return err
	}
	emit("asn_table_page_rows", len(first.GetAsns()))

	// The whole table, every page of the largest size.
	api := table{}
	rows := 0
	t0 := time.Now()
	for token := ""; ; {
		var page pb.ListASNsResponse
		if _, err := b.api.message(ctx, "/api/v1/asns?window=30d&page_size=5000&page_token="+token, &page); err != nil {
			return err
		}
		api.addSummaries(page.GetAsns())
		rows += len(page.GetAsns())
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	emit("asn_table_all_pages_ms", ms(time.Since(t0)))
	emit("asn_table_rows", rows)

	logf("ASN table by plain SQL over the raw results, 3 runs")
	start, end := b.window()
	var took []time.Duration
	var sql table
	for range 3 {
		t0 := time.Now()
		t, err := plainSQL(ctx, b.pool, false, start, end, 0)
		if err != nil {
			return err
		}
		took = append(took, time.Since(t0))
		sql = t
	}
	emit("asn_table_sql_ms", ms(median(took)))
	return check("asn_table_equal", api, sql)
}

// check prints whether the API and plain SQL agree, and fails loudly when
// they do not.
func check(name string, api, sql table) error {
	n, examples := diff(api, sql)
	emit(name, n == 0)
	if n == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "%s: the API and plain SQL disagree on %d of %d/%d keys, such as:\n  %s\n", name, n, len(api), len(sql), strings.Join(examples, "\n  "))
	return fmt.Errorf("%s: the API's answer differs from plain SQL's", name)
}

// timelines measures GET /api/v1/asns/{asn} over a sample of ASNs, half
// drawn uniformly (mostly small networks), half by agents (mostly big
// ones), then the same timelines by plain SQL.
func (b *bench) timelines(ctx context.Context) error {
	r := b.w.rng
	seen := map[uint32]bool{}
	weights := make([]float64, len(b.w.asns))
	for i, a := range b.w.asns {
		weights[i] = float64(len(a.agents))
	}
	for tries := 0; len(b.sample) < b.c.requests && tries < 100*b.c.requests; tries++ {
		i := r.IntN(len(b.w.asns))
		if len(b.sample)%2 == 1 {
			i = pick(r, weights)
		}
		if a := b.w.asns[i].asn; !seen[a] {
			seen[a] = true
			b.sample = append(b.sample, a)
		}
	}
	n := len(b.sample)
	logf("ASN timelines: %d ASNs", n)
	path := func(i int) string { return fmt.Sprintf("/api/v1/asns/%d?window=30d", b.sample[i%n]) }
	if _, err := b.series(ctx, 0, path); err != nil { // warm-up
		return err
	}
	api := table{}
	var ds []time.Duration
	for _, asn := range b.sample {
		var resp pb.GetASNResponse
		d, err := b.api.message(ctx, fmt.Sprintf("/api/v1/asns/%d?window=30d", asn), &resp)
		if err != nil {
			return err
		}
		ds = append(ds, d)
		api.addTimeline(asn, resp.GetTimeline())
	}
	emitLatency("timeline", ds)

	logf("ASN timelines by plain SQL over the raw results")
	start, end := b.window()
	sql := table{}
	ds = nil
	for i := range warmup + n {
		asn := b.sample[((i-warmup)%n+n)%n]
		t0 := time.Now()
		t, err := plainSQL(ctx, b.pool, true, start, end, asn)
		if err != nil {
			return err
		}
		if i >= warmup {
			ds = append(ds, time.Since(t0))
			for k, v := range t {
				sql[k] = v
			}
		}
	}
	emitLatency("timeline_sql", ds)
	emit("timeline_keys", len(sql))
	return check("timeline_equal", api, sql)
}

// exports measures one day's export as CSV and Parquet over the API, and
// the same rows as CSV by COPY, 3 runs each.
func (b *bench) exports(ctx context.Context) error {
	day := dataset.Today(b.now).Add(-dataset.Day)
	path := fmt.Sprintf("/api/v1/export?start=%s&end=%s&format=", day.Format(time.DateOnly), day.Add(dataset.Day).Format(time.DateOnly))
	logf("export of %s: CSV, Parquet and COPY, 3 runs each", day.Format(time.DateOnly))
	var csvRate, pqRate, copyRate []time.Duration // per million rows, to reuse the duration helpers
	var rows int64 = -1
	agree := func(what string, n int64) error {
		if rows >= 0 && n != rows {
			return fmt.Errorf("export: %s gave %d rows, another %d", what, n, rows)
		}
		rows = n
		return nil
	}
	perM := func(d time.Duration, n int64) time.Duration {
		return time.Duration(float64(d) * 1e6 / float64(max(n, 1)))
	}
	var csvBytes, pqBytes int64
	for range 3 {
		lines := &lineCounter{}
		d, err := b.api.get(ctx, path+"csv", lines)
		if err != nil {
			return err
		}
		if err := agree("CSV", lines.lines-1); err != nil {
			return err
		}
		csvRate = append(csvRate, perM(d, rows))
		csvBytes = lines.bytes

		var buf bytes.Buffer
		d, err = b.api.get(ctx, path+"parquet", &buf)
		if err != nil {
			return err
		}
		f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			return fmt.Errorf("export: parquet: %w", err)
		}
		if err := agree("Parquet", f.NumRows()); err != nil {
			return err
		}
		pqRate = append(pqRate, perM(d, rows))
		pqBytes = int64(buf.Len())

		conn, err := b.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		t0 := time.Now()
		tag, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, exportSQL(day, day.Add(dataset.Day)))
		d = time.Since(t0)
		conn.Release()
		if err != nil {
			return fmt.Errorf("export: copy: %w", err)
		}
		if err := agree("COPY", tag.RowsAffected()); err != nil {
			return err
		}
		copyRate = append(copyRate, perM(d, rows))
	}
	rate := func(perMillion []time.Duration) int64 { return int64(math.Round(1e6 / median(perMillion).Seconds())) }
	emit("export_day", day.Format(time.DateOnly))
	emit("export_rows", rows)
	emit("export_csv_rows_per_s", rate(csvRate))
	emit("export_parquet_rows_per_s", rate(pqRate))
	emit("export_copy_rows_per_s", rate(copyRate))
	emit("export_csv_mib", float64(csvBytes)/(1<<20))
	emit("export_parquet_mib", float64(pqBytes)/(1<<20))
	return nil
}

// archives measures the daily archive of the exported day (a Parquet
// file, written and hashed, and its manifest), next to COPY of the same
// rows in the archive's order, 3 runs each: issue 13's "archive write rate
// next to COPY ... TO of the same rows".
func (b *bench) archives(ctx context.Context, st *store.Store, ds *dataset.Dataset) error {
	day := dataset.Today(b.now).Add(-dataset.Day)
	logf("archive of %s: Parquet file and COPY, 3 runs each", day.Format(time.DateOnly))
	var archRate, copyRate []time.Duration
	var rows, size int64
	for range 3 {
		dir, err := os.MkdirTemp("", "op25b-bench-archive-")
		if err != nil {
			return err
		}
		a := &archive.Archiver{Dir: dir, Results: ds, Store: st, Now: func() time.Time { return b.now }}
		res, err := a.Run(ctx, archive.Options{From: day, To: day})
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		if res.Days != 1 {
			return fmt.Errorf("archive: %d days written; want 1", res.Days)
		}
		rows, size = res.Rows, res.Bytes
		archRate = append(archRate, time.Duration(float64(res.Took)*1e6/float64(max(rows, 1))))

		conn, err := b.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		t0 := time.Now()
		tag, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, archiveSQL(day))
		d := time.Since(t0)
		conn.Release()
		if err != nil {
			return fmt.Errorf("archive: copy: %w", err)
		}
		if tag.RowsAffected() != rows {
			return fmt.Errorf("archive: COPY gave %d rows, the archive %d", tag.RowsAffected(), rows)
		}
		copyRate = append(copyRate, time.Duration(float64(d)*1e6/float64(max(rows, 1))))
	}
	rate := func(perMillion []time.Duration) int64 { return int64(math.Round(1e6 / median(perMillion).Seconds())) }
	emit("archive_rows", rows)
	emit("archive_rows_per_s", rate(archRate))
	emit("archive_copy_rows_per_s", rate(copyRate))
	emit("archive_bytes_per_row", float64(size)/float64(max(rows, 1)))
	return nil
}

// lineCounter counts the bytes and lines written to it.
type lineCounter struct{ bytes, lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.bytes += int64(len(p))
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// refresh ingests one more hour of results through the ingest path's
// store (which maintains the tallies), times the incremental refresh, and
// checks part of its outcome against plain SQL.
func (b *bench) refresh(ctx context.Context, st *store.Store, ds *dataset.Dataset) error {
	rs := b.w.results(b.now, b.now.Add(time.Hour), &quota{limit: math.MaxInt64})
	logf("refresh: ingesting %d results of the next hour in batches of 200", len(rs))
	t0 := time.Now()
	var n int64
	for i := 0; i < len(rs); i += 200 {
		k, err := st.InsertResults(ctx, rs[i:min(i+200, len(rs))])
		if err != nil {
			return err
		}
		n += k
	}
	emit("refresh_ingest_rows_per_s", int64(math.Round(float64(n)/time.Since(t0).Seconds())))
	rst, err := ds.Refresh(ctx)
	if err != nil {
		return err
	}
	if rst.Skipped || rst.AllWindows {
		return fmt.Errorf("refresh: skipped %v, all windows %v: want an incremental refresh", rst.Skipped, rst.AllWindows)
	}
	emit("refresh_s", rst.Took.Seconds())
	emit("refresh_rows", n)
	emit("refresh_keys", rst.Keys)
	emit("refresh_days", rst.Days)

	// The refreshed timelines and summaries of part of the sample, against
	// plain SQL now that the hour is in.
	return b.checkSample(ctx, "refresh_equal")
}

// checkSample checks the timelines and summaries of up to 50 ASNs of the
// sample against plain SQL over the raw results, and emits name.
func (b *bench) checkSample(ctx context.Context, name string) error {
	logf("%s: checking %d ASNs against plain SQL", name, min(50, len(b.sample)))
	start, end := b.window()
	api, sql := table{}, table{}
	for _, asn := range b.sample[:min(50, len(b.sample))] {
		var resp pb.GetASNResponse
		if _, err := b.api.message(ctx, fmt.Sprintf("/api/v1/asns/%d?window=30d", asn), &resp); err != nil {
			return err
		}
		api.addTimeline(asn, resp.GetTimeline())
		api.addSummaries(resp.GetSummaries())
		for _, daily := range []bool{true, false} {
			t, err := plainSQL(ctx, b.pool, daily, start, end, asn)
			if err != nil {
				return err
			}
			for k, v := range t {
				sql[k] = v
			}
		}
	}
	return check(name, api, sql)
}
