package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// finished are the seeded world's days before its today, which Run
// writes; the seeded week ends with today.
var finished = func() []string {
	var out []string
	for d := datasettest.Now.Truncate(dataset.Day).AddDate(0, 0, -6); d.Before(datasettest.Now.Truncate(dataset.Day)); d = d.Add(dataset.Day) {
		out = append(out, d.Format(time.DateOnly))
	}
	return out
}()

func newArchiver(s *store.Store, d *dataset.Dataset, dir string) *archive.Archiver {
	return &archive.Archiver{Dir: dir, Results: d, Store: s, Now: datasettest.Clock}
}

func run(t *testing.T, a *archive.Archiver, o archive.Options) archive.Stats {
	t.Helper()
	st, err := a.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run(%+v): %v", o, err)
	}
	return st
}

// tree returns every file under dir, by path relative to it.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func manifest(t *testing.T, dir string) *archive.Manifest {
	t.Helper()
	m, err := archive.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// storedPerDay counts the raw results of each day in the database.
func storedPerDay(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	rows, err := s.Pool.Query(context.Background(), `SELECT to_char(measured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*) FROM results GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var day string
		var n int64
		if err := rows.Scan(&day, &n); err != nil {
			t.Fatal(err)
		}
		out[day] = n
	}
	return out
}

// TestArchiveDays writes the finished days into two directories and
// checks that the files and manifests are byte for byte the same, that
// the manifest agrees with the files and the database, and that a second
// run writes nothing.
func TestArchiveDays(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		st := run(t, newArchiver(s, d, dir), archive.Options{})
		if st.Days != len(finished) || st.Locked || st.Last.Format(time.DateOnly) != finished[len(finished)-1] {
			t.Errorf("Run into %s = %+v; want %d days written, the last %s", dir, st, len(finished), finished[len(finished)-1])
		}
	}
	first, second := tree(t, dirs[0]), tree(t, dirs[1])
	if !reflect.DeepEqual(first, second) {
		t.Errorf("two runs over the same results wrote different files: %d and %d files", len(first), len(second))
		for name, b := range first {
			if !bytes.Equal(b, second[name]) {
				t.Errorf("%s differs", name)
			}
		}
	}

	m := manifest(t, dirs[0])
	stored := storedPerDay(t, s)
	var days []string
	for _, e := range m.Days {
		days = append(days, e.Day)
		b := first[e.Path]
		sum := sha256.Sum256(b)
		if e.SHA256 != hex.EncodeToString(sum[:]) || e.Bytes != int64(len(b)) {
			t.Errorf("%s: manifest says %d bytes of SHA-256 %s; the file has %d of %x", e.Path, e.Bytes, e.SHA256, len(b), sum)
		}
		if e.Rows != stored[e.Day] {
			t.Errorf("%s: %d rows; the database holds %d results of %s", e.Path, e.Rows, stored[e.Day], e.Day)
		}
		if e.SchemaVersion != dataset.SchemaVersion || e.Licence != dataset.Licence {
			t.Errorf("%s: schema %q, licence %q; want %q, %q", e.Path, e.SchemaVersion, e.Licence, dataset.SchemaVersion, dataset.Licence)
		}
		if want := e.Day[:4] + "/op25b-results-" + e.Day + ".parquet"; e.Path != want {
			t.Errorf("path %q; want %q", e.Path, want)
		}
	}
	if !reflect.DeepEqual(days, finished) {
		t.Errorf("manifest lists %q; want the finished days %q (not today)", days, finished)
	}

	st := run(t, newArchiver(s, d, dirs[0]), archive.Options{})
	if st.Days != 0 {
		t.Errorf("a second run wrote %d days; want none", st.Days)
	}
	if again := tree(t, dirs[0]); !reflect.DeepEqual(again, first) {
		t.Error("a second run changed the directory")
	}
}

// TestArchiveRange writes only the days of --from and --to.
func TestArchiveRange(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	dir := t.TempDir()
	from, _ := time.Parse(time.DateOnly, finished[1])
	to, _ := time.Parse(time.DateOnly, finished[2])
	if st := run(t, newArchiver(s, d, dir), archive.Options{From: from, To: to}); st.Days != 2 {
		t.Errorf("Run from %s to %s wrote %d days; want 2", finished[1], finished[2], st.Days)
	}
	var days []string
	for _, e := range manifest(t, dir).Days {
		days = append(days, e.Day)
	}
	if want := finished[1:3]; !reflect.DeepEqual(days, want) {
		t.Errorf("manifest lists %q; want %q", days, want)
	}
}

// TestArchiveLateResult rewrites a day that received a result after its
// file was written.
func TestArchiveLateResult(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	dir := t.TempDir()
	a := newArchiver(s, d, dir)
	run(t, a, archive.Options{})
	before, _ := manifest(t, dir).Entry(mustDay(finished[0]))

	at := mustDay(finished[0]).Add(23 * time.Hour)
	late := store.Result{ID: uuidv7.New(at), MeasuredAt: at, AgentID: "agent-late", RefMTA: "refmta-test", Port: 25, Family: 4, Verdict: 1,
		Egress: netip.MustParseAddr("198.51.100.7"), Prefix: netip.MustParsePrefix("198.51.100.0/24"), ASN: 64500, Evidence: []byte{}}
	if _, err := s.InsertResults(context.Background(), []store.Result{late}); err != nil {
		t.Fatal(err)
	}
	if st := run(t, a, archive.Options{}); st.Days != 1 || st.Rows != before.Rows+1 {
		t.Errorf("Run after a late result = %+v; want its day written again with %d rows", st, before.Rows+1)
	}
	after, _ := manifest(t, dir).Entry(mustDay(finished[0]))
	if after.Rows != before.Rows+1 || after.SHA256 == before.SHA256 {
		t.Errorf("entry after a late result = %+v; before %+v", after, before)
	}
}

func mustDay(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestArchiveErrors: a directory that cannot be made and a corrupt
// manifest are errors that name the path, and leave the manifest as it
// was.
func TestArchiveErrors(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newArchiver(s, d, filepath.Join(file, "archive")).Run(context.Background(), archive.Options{})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("Run into a directory under a file: %v; want an error naming %s", err, file)
	}

	for name, text := range map[string]string{
		"not JSON":       "{",
		"unknown format": `{"manifest_version": 9, "days": []}`,
		"bad checksum":   `{"manifest_version": 1, "days": [{"day": "2026-03-04", "path": "2026/op25b-results-2026-03-04.parquet", "rows": 1, "bytes": 1, "sha256": "x"}]}`,
		"wrong path":     `{"manifest_version": 1, "days": [{"day": "2026-03-04", "path": "../etc/passwd", "rows": 1, "bytes": 1, "sha256": "` + strings.Repeat("0", 64) + `"}]}`,
	} {
		dir := t.TempDir()
		mf := filepath.Join(dir, archive.ManifestName)
		if err := os.WriteFile(mf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := newArchiver(s, d, dir).Run(context.Background(), archive.Options{})
		if err == nil || !strings.Contains(err.Error(), mf) {
			t.Errorf("%s: Run = %v; want an error naming %s", name, err, mf)
		}
		if b, _ := os.ReadFile(mf); string(b) != text {
			t.Errorf("%s: the manifest was changed to %q", name, b)
		}
	}
}

// TestArchiveLocked does nothing while another collector holds the lock.
func TestArchiveLocked(t *testing.T) {
	s, d := datasettest.Open(t, datasettest.NewWorld())
	unlock, ok, err := s.TryLock(context.Background(), archive.LockKey)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	dir := t.TempDir()
	if st := run(t, newArchiver(s, d, dir), archive.Options{}); !st.Locked || st.Days != 0 {
		t.Errorf("Run while the lock is held = %+v; want Locked and nothing written", st)
	}
	unlock()
	if st := run(t, newArchiver(s, d, dir), archive.Options{}); st.Locked || st.Days != len(finished) {
		t.Errorf("Run after the lock was released = %+v; want %d days", st, len(finished))
	}
}

// TestRetention retires the raw results of archived days only, keeps
// their rollups, also through a rebuild, and keeps a day whose file does
// not match the manifest.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	s, d := datasettest.Open(t, datasettest.NewWorld())
	dir := t.TempDir()
	a := newArchiver(s, d, dir)
	// Archive the first three days only; retain the last three days
	// (today and the two before), so the first four days are old enough.
	run(t, a, archive.Options{To: mustDay(finished[2])})
	corrupt, _ := manifest(t, dir).Entry(mustDay(finished[2]))
	path := filepath.Join(dir, corrupt.Path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// tallies sums the rollups: agg_agent_day per day, the daily points,
	// the per-reference-MTA tallies and the evidence.
	tallies := func() map[string]int64 {
		out := map[string]int64{}
		for _, q := range []string{
			`SELECT 'agent_day ' || day, count(*) FROM agg_agent_day GROUP BY day`,
			`SELECT 'agent_day results ' || day, sum(n_open + n_blocked_timeout + n_blocked_reset + n_intercepted + n_inconclusive) FROM agg_agent_day GROUP BY day`,
			`SELECT 'refmta_day ' || day, sum(n_open + n_blocked + n_intercepted + n_inconclusive) FROM agg_refmta_day GROUP BY day`,
			`SELECT 'points', count(*) FROM agg_port WHERE window_days = 0`,
			`SELECT 'evidence', coalesce(sum(results), 0) FROM agg_evidence`,
		} {
			rows, err := s.Pool.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var k string
				var n int64
				if err := rows.Scan(&k, &n); err != nil {
					t.Fatal(err)
				}
				out[k] = n
			}
			rows.Close()
		}
		return out
	}
	before := tallies()
	storedBefore := storedPerDay(t, s)

	st := run(t, a, archive.Options{To: mustDay(finished[2]), RetainRawDays: 3})
	if st.Retired != 2 || st.Kept != 2 {
		t.Errorf("Run with retention = %+v; want 2 days retired (archived), 2 kept (one file damaged, one not archived)", st)
	}
	stored := storedPerDay(t, s)
	for i, day := range finished {
		retired := i < 2
		if _, ok := stored[day]; ok == retired {
			t.Errorf("%s: raw results present %v; want %v", day, ok, !retired)
		}
		if !retired && stored[day] != storedBefore[day] {
			t.Errorf("%s: %d raw results; want %d kept", day, stored[day], storedBefore[day])
		}
	}
	raw, err := s.RawDays(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || raw[0].Format(time.DateOnly) != finished[2] {
		t.Errorf("first raw partition %v; want %s", raw, finished[2])
	}
	if after := tallies(); !reflect.DeepEqual(after, before) {
		t.Errorf("rollups after retention = %v; want them kept: %v", after, before)
	}
	if _, err := d.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if after := tallies(); !reflect.DeepEqual(after, before) {
		t.Errorf("rollups after retention and a rebuild = %v; want them kept: %v", after, before)
	}

	// The archive of a retired day stays, and is not written again.
	if st := run(t, a, archive.Options{}); st.Days != len(finished)-3 {
		t.Errorf("Run after retention wrote %d days; want the %d days not archived yet", st.Days, len(finished)-3)
	}
	m := manifest(t, dir)
	for _, day := range finished[:2] {
		if e, ok := m.Entry(mustDay(day)); !ok || e.Rows != storedBefore[day] {
			t.Errorf("%s: manifest entry %+v, %v after retention; want %d rows", day, e, ok, storedBefore[day])
		}
	}
}

// TestRetireDayCounts refuses to drop a day that holds other results than
// the archive's.
func TestRetireDayCounts(t *testing.T) {
	s, _ := datasettest.Open(t, datasettest.NewWorld())
	day := mustDay(finished[0])
	n := storedPerDay(t, s)[finished[0]]
	if err := s.RetireDay(context.Background(), day, n-1); !errors.Is(err, store.ErrRowsDiffer) {
		t.Errorf("RetireDay(%s, %d) with %d stored = %v; want ErrRowsDiffer", finished[0], n-1, n, err)
	}
	if got := storedPerDay(t, s)[finished[0]]; got != n {
		t.Errorf("%s: %d results after a refused retirement; want %d", finished[0], got, n)
	}
}
