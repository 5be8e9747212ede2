package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/httpapi"
)

// TestArchiveCommand archives the seeded week (long finished: it is in
// March 2026) and retires its raw results.
func TestArchiveCommand(t *testing.T) {
	url, st := openStore(t)
	w := datasettest.NewWorld()
	w.Seed(t, st)
	dir := t.TempDir()
	var out bytes.Buffer
	if err := archiveDays([]string{"--database-url", url, "--log-level", "error", "--dir", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "archived 7 days (") {
		t.Errorf("archive printed %q; want 7 days archived", out.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--dir is required"},
		{[]string{"--dir", dir, "--from", "March"}, "--from"},
		{[]string{"--dir", dir, "--retain-raw-days", "30"}, "--retain-raw-days 30: must be more than 30"},
	} {
		err := archiveDays(append([]string{"--database-url", url, "--log-level", "error"}, tc.args...), &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("archive %q: %v; want an error with %q", tc.args, err, tc.want)
		}
	}
	out.Reset()
	if err := archiveDays([]string{"--database-url", url, "--log-level", "error", "--dir", dir, "--retain-raw-days", "31"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "archived 0 days") || !strings.Contains(out.String(), "raw results retired: 7 days, kept: 0 days") {
		t.Errorf("archive --retain-raw-days 31 printed %q; want nothing archived, 7 days retired", out.String())
	}
	var n int
	st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM results").Scan(&n)
	if n != 0 {
		t.Errorf("%d raw results left; want none", n)
	}
}

// TestArchiveRoute serves the archive directory under /archive/, without
// the files of writes in progress.
func TestArchiveRoute(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		archive.ManifestName:                    `{"manifest_version": 1, "days": []}`,
		"2026/op25b-results-2026-03-04.parquet": "PAR1 day PAR1",
		"2026/.op25b-123.tmp":                   "half written",
		".op25b-456.tmp":                        "half written",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	limit := httpapi.NewLimiter(httpapi.LimitOptions{Rate: 1000, Burst: 1000})
	h := httpHandler(emptyDataset{}, func(context.Context) error { return nil }, http.NotFoundHandler(), limit, webOptions{archives: dir}, slog.New(slog.DiscardHandler))
	get := func(path string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for path, want := range map[string]string{
		"/archive/manifest.json":                         files[archive.ManifestName],
		"/archive/2026/op25b-results-2026-03-04.parquet": files["2026/op25b-results-2026-03-04.parquet"],
	} {
		if w := get(path); w.Code != http.StatusOK || w.Body.String() != want {
			t.Errorf("GET %s = %d %q; want 200 %q", path, w.Code, w.Body, want)
		}
	}
	if w := get("/archive/2026/op25b-results-2026-03-04.parquet", "Range", "bytes=0-3"); w.Code != http.StatusPartialContent || w.Body.String() != "PAR1" {
		t.Errorf("GET with Range: %d %q; want 206 \"PAR1\" (readers fetch the footer first)", w.Code, w.Body)
	}
	for _, path := range []string{"/archive/", "/archive/2026/"} {
		w := get(path)
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), ".tmp") {
			t.Errorf("GET %s = %d %q; want a listing without the temporary files", path, w.Code, w.Body)
		}
	}
	if !strings.Contains(get("/archive/2026/").Body.String(), "op25b-results-2026-03-04.parquet") {
		t.Error("the year's listing lacks the day's file")
	}
	for _, path := range []string{"/archive/2026/.op25b-123.tmp", "/archive/.op25b-456.tmp", "/archive/../go.mod"} {
		if w := get(path); w.Code == http.StatusOK {
			t.Errorf("GET %s = 200 %q; want it refused", path, w.Body)
		}
	}
	h = httpHandler(emptyDataset{}, func(context.Context) error { return nil }, http.NotFoundHandler(), limit, webOptions{}, slog.New(slog.DiscardHandler))
	if w := get("/archive/manifest.json"); w.Code == http.StatusOK {
		t.Errorf("without --archive-dir, GET /archive/manifest.json = 200")
	}
}
