package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/datasetclient"
	"github.com/op25b/observatory/collector/datasetclient/datasetclienttest"
)

func TestExport(t *testing.T) {
	s := datasetclienttest.Start(t)
	s.ExportRows, s.Chunk = 500, 64
	file := filepath.Join(t.TempDir(), "jp-week.csv")
	code, out, errOut := runCmd(t, "export", "--start", "2026-03-01", "--end", "2026-03-08", "--country", "JP",
		"--family", "ipv4", "--asn", "AS64500", "-o", file, "--collector", s.URL)
	if code != exitOK || out != "" {
		t.Fatalf("export = %d, stdout %q, stderr %q", code, out, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 501 || lines[0] != datasetclienttest.ExportHeader || !strings.Contains(lines[500], "2026-03-07T23:59:59Z") {
		t.Errorf("%s has %d lines, first %q, last %q; want the header and 500 rows up to 2026-03-07T23:59:59Z",
			file, len(lines), lines[0], lines[len(lines)-1])
	}
	if !strings.HasPrefix(errOut, "exported 500 rows, "+byteSize(int64(len(b)))+" in ") || !strings.HasSuffix(errOut, " to "+file+"\n") {
		t.Errorf("export stderr %q; want one summary line", errOut)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("%s.partial left behind: %v", file, err)
	}
	if got, want := s.Requests()[0], "/api/v1/export?asn=64500&country=JP&end=2026-03-08&family=ipv4&format=csv&start=2026-03-01"; got != want {
		t.Errorf("request %q; want %q", got, want)
	}
}

func TestExportStdoutQuiet(t *testing.T) {
	s := datasetclienttest.Start(t)
	code, out, errOut := runCmd(t, "export", "--start", "2026-03-01T12:00:00Z", "--end", "2026-03-02", "--format", "ndjson",
		"--quiet", "-o", "-", "--collector", s.URL)
	if code != exitOK || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, `{"result_id":`) || errOut != "" {
		t.Errorf("export -o - --quiet = %d, stdout %q, stderr %q; want 5 NDJSON rows and silence", code, out, errOut)
	}
}

// A transfer broken off leaves no file, partial or final, and fails; so
// does a Parquet export failing before its first bytes.
func TestExportBroken(t *testing.T) {
	for _, tc := range []struct{ format, wantErr string }{
		{"csv", "op25b export: export broken off: unexpected EOF (6 rows, "},
		{"parquet", "op25b export: collector said 500 INTERNAL: the dataset query failed (error id "},
	} {
		s := datasetclienttest.Start(t)
		s.ExportRows, s.BreakAfter = 10, 6
		dir := t.TempDir()
		file := filepath.Join(dir, "out."+tc.format)
		code, _, errOut := runCmd(t, "export", "--start", "2026-03-01", "--end", "2026-03-08", "--format", tc.format, "-o", file, "--collector", s.URL)
		if code != exitFailed || !strings.HasPrefix(errOut, tc.wantErr) {
			t.Errorf("export (%s) failing = %d, stderr %q; want 1 and %q", tc.format, code, errOut, tc.wantErr)
		}
		if tc.format == "csv" && !strings.HasSuffix(errOut, "; removed "+file+".partial\n") {
			t.Errorf("export stderr %q; want the removal of %s.partial", errOut, file)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("after a failed export, %s holds %v; want nothing", dir, entries)
		}
	}
}

func TestExportInterrupted(t *testing.T) {
	s := datasetclienttest.Start(t)
	file := filepath.Join(t.TempDir(), "x.csv")
	if err := os.WriteFile(file, []byte("an older export\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"export", "--start", "2026-03-01", "--end", "2026-03-08", "-o", file, "--collector", s.URL}, &out, &errOut)
	if code != exitFailed || errOut.String() != "op25b export: interrupted\n" {
		t.Errorf("export after SIGINT = %d, stderr %q; want 1", code, errOut.String())
	}
	if b, _ := os.ReadFile(file); string(b) != "an older export\n" {
		t.Errorf("an interrupted export replaced %s: %q", file, b)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("%s.partial left behind: %v", file, err)
	}
}

// fakeClock advances by step each time it is read.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

func TestProgressLines(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 3, 12, 9, 0, 0, 0, time.UTC), step: 300 * time.Millisecond}
	pp := newProgressPrinter(&buf, false, true, false, clock.now)
	for i := 1; i <= 10; i++ { // 3 s in all
		pp.update(datasetclient.Progress{Rows: int64(i) * 12000, Bytes: int64(i) * 1_420_000, Fraction: float64(i) / 25})
	}
	want := "exported 48,000 rows, 5.7 MB, 16%\nexported 96,000 rows, 11.4 MB, 32%\n"
	if buf.String() != want {
		t.Errorf("progress lines:\n%s\nwant at most one a second:\n%s", buf.String(), want)
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 3, 12, 9, 0, 0, 0, time.UTC), step: 6 * time.Second}
	pp := newProgressPrinter(&buf, true, true, false, clock.now)
	pp.update(datasetclient.Progress{Rows: 120000, Bytes: 14_200_000, Fraction: 0.41,
		LastMeasuredAt: time.Date(2026, 3, 3, 21, 50, 0, 0, time.UTC)})
	pp.clear()
	want := "\r\x1b[K[#########---------------]   41%  up to 2026-03-03  120,000 rows  14.2 MB  2.4 MB/s  0:06\r\x1b[K"
	if buf.String() != want {
		t.Errorf("progress bar %q; want %q", buf.String(), want)
	}
	buf.Reset()
	pp = newProgressPrinter(&buf, true, false, false, clock.now)
	pp.update(datasetclient.Progress{Bytes: 2500, Fraction: -1})
	if want := "\r\x1b[K2.5 kB  417 B/s  0:06"; buf.String() != want {
		t.Errorf("Parquet progress without a length %q; want %q", buf.String(), want)
	}
}
