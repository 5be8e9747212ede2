// Package archive keeps the published results as daily files: each
// finished UTC day as one Parquet file (collector/resultfile: the export's
// columns and privacy rules, a /24 or /48 prefix and never an address)
// under a directory, with a manifest of each file's rows, size and
// SHA-256. The same results give the same bytes. It serves the directory
// read-only, and retires the raw results of archived days from the
// database when asked, keeping the rollups. docs/researcher.md ("Daily
// archives") documents the files and the manifest, docs/operator.md the
// flags and retention.
package archive

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/resultfile"
	"github.com/op25b/observatory/collector/store"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// LockKey is the advisory lock that lets one collector at a time write
// archives and retire days, among collectors sharing a database ("arc"
// in ASCII).
const LockKey = 0x617263

// Results reads the public results of one UTC day in a stable order
// (dataset.Dataset.DayResults).
type Results interface {
	DayResults(ctx context.Context, day time.Time, emit func([]*pb.PublicResult) error) error
}

// Store is what the archiver needs of the database (store.Store).
type Store interface {
	ResultsPerDay(ctx context.Context, from, to time.Time) ([]store.DayCount, error)
	RawDays(ctx context.Context) ([]time.Time, error)
	RetireDay(ctx context.Context, day time.Time, archived int64) error
	TryLock(ctx context.Context, key int64) (unlock func(), ok bool, err error)
}

// Archiver writes the daily files of one directory. Its methods are not
// to be called concurrently.
type Archiver struct {
	Dir     string
	Results Results
	Store   Store
	Now     func() time.Time // nil: time.Now
	Log     *slog.Logger     // nil: no logs

	// tried holds, per day written, the count of stored results it was
	// written for: a day whose file cannot agree with the count (which
	// should not happen) is written again only when the count changes,
	// not at every run.
	tried map[time.Time]int64
}

// Options say what one run does.
type Options struct {
	// From and To bound the days written, both included; zero: from the
	// first day with results, to yesterday (UTC). Today is never written:
	// it is not finished.
	From, To time.Time
	// RetainRawDays, when positive, retires the raw results of days
	// before the last RetainRawDays days (UTC, today included) whose file
	// the manifest lists and whose bytes on disk match its SHA-256.
	RetainRawDays int
}

// Stats say what one run did.
type Stats struct {
	Locked  bool  // another collector was archiving: nothing was done
	Days    int   // files written (new days, or days whose results changed)
	Rows    int64 // in the files written
	Bytes   int64 // of the files written
	Retired int   // days whose raw results were dropped
	Kept    int   // days old enough to retire that were kept (not archived, or the file does not match)
	// Last is the latest day the manifest lists (zero: none).
	Last time.Time
	Took time.Duration
}

// The temporary files of writes in progress: hidden from the server (a
// leading dot) and removed by the next run when a write was cut short.
const (
	tempPrefix = ".op25b-"
	tempSuffix = ".tmp"
)

func (a *Archiver) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// Run writes the file of every finished day with results in o's range
// that the manifest lacks, or whose stored results changed since its file
// was written (results uploaded late), writing the manifest after each
// file; then, with o.RetainRawDays, retires what it may. It does nothing
// when another collector sharing the database runs (Stats.Locked).
func (a *Archiver) Run(ctx context.Context, o Options) (Stats, error) {
	began := time.Now()
	st, err := a.run(ctx, o)
	st.Took = time.Since(began)
	return st, err
}

func (a *Archiver) run(ctx context.Context, o Options) (Stats, error) {
	var st Stats
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	today := dataset.Today(now())
	if err := prepare(a.Dir); err != nil {
		return st, err
	}
	unlock, ok, err := a.Store.TryLock(ctx, LockKey)
	if err != nil {
		return st, fmt.Errorf("archive: %w", err)
	}
	if !ok {
		st.Locked = true
		return st, nil
	}
	defer unlock()
	if err := removeTemps(a.Dir); err != nil {
		return st, err
	}
	m, err := ReadManifest(a.Dir)
	if err != nil {
		return st, err
	}
	counts, err := a.Store.ResultsPerDay(ctx, time.Time{}, today)
	if err != nil {
		return st, fmt.Errorf("archive: %w", err)
	}
	rawList, err := a.Store.RawDays(ctx)
	if err != nil {
		return st, fmt.Errorf("archive: %w", err)
	}
	raw := map[time.Time]bool{}
	for _, d := range rawList {
		raw[d] = true
	}
	if a.tried == nil {
		a.tried = map[time.Time]int64{}
	}

	var due []store.DayCount
	for _, c := range counts {
		e, listed := m.Entry(c.Day)
		switch {
		case c.Day.Before(dataset.Today(o.From)) || !o.To.IsZero() && c.Day.After(dataset.Today(o.To)):
		case listed && e.Rows == c.Results && present(a.Dir, e), a.tried[c.Day] == c.Results:
		case !raw[c.Day]:
			if !listed {
				a.log().Warn("archive: the raw results of a day were retired, and this directory's manifest does not list its file: copy it from the directory that does",
					"day", c.Day.Format(time.DateOnly), "dir", a.Dir)
			}
		default:
			due = append(due, c)
		}
	}
	for i, c := range due {
		began := time.Now()
		e, err := a.writeDay(ctx, c.Day)
		if err != nil {
			return st, err
		}
		a.tried[c.Day] = c.Results
		if e.Rows == 0 {
			continue
		}
		if e.Rows != c.Results {
			a.log().Warn("archive: a day's file holds a different number of results than the tallies count", "day", e.Day, "rows", e.Rows, "tallies", c.Results)
		}
		m.put(e)
		if err := m.write(a.Dir); err != nil {
			return st, err
		}
		st.Days++
		st.Rows += e.Rows
		st.Bytes += e.Bytes
		took := time.Since(began)
		a.log().Info("archive: day written", "day", e.Day, "rows", e.Rows, "bytes", e.Bytes, "took", took.Round(time.Millisecond),
			"rows_per_second", int64(float64(e.Rows)/max(took.Seconds(), 1e-6)), "done", fmt.Sprintf("%d/%d", i+1, len(due)))
	}
	if len(m.Days) > 0 {
		st.Last, _ = time.Parse(time.DateOnly, m.Days[len(m.Days)-1].Day)
	}
	if o.RetainRawDays > 0 {
		err = a.retire(ctx, m, rawList, counts, today.AddDate(0, 0, 1-o.RetainRawDays), &st)
	}
	return st, err
}

// retire drops the raw results of the days before cutoff that the
// manifest lists and whose file on disk matches it, and of the days
// before cutoff that have no results. It goes on past a day it cannot
// retire, and returns the first error.
func (a *Archiver) retire(ctx context.Context, m *Manifest, raw []time.Time, counts []store.DayCount, cutoff time.Time, st *Stats) error {
	stored := map[time.Time]bool{}
	for _, c := range counts {
		stored[c.Day] = true
	}
	var first error
	for _, day := range raw {
		if !day.Before(cutoff) {
			break
		}
		var rows int64
		if stored[day] {
			e, ok := m.Entry(day)
			if !ok {
				st.Kept++
				a.log().Warn("archive: raw results kept: the day has no file in the archive yet", "day", day.Format(time.DateOnly))
				continue
			}
			if err := verify(a.Dir, e); err != nil {
				st.Kept++
				a.log().Error("archive: raw results kept: the day's file does not match the manifest", "day", e.Day, "err", err)
				continue
			}
			rows = e.Rows
		}
		if err := a.Store.RetireDay(ctx, day, rows); err != nil {
			st.Kept++
			a.log().Warn("archive: raw results kept", "day", day.Format(time.DateOnly), "err", err)
			if first == nil && !errors.Is(err, store.ErrRowsDiffer) {
				first = fmt.Errorf("archive: %w", err)
			}
			continue
		}
		st.Retired++
		a.log().Info("archive: raw results retired", "day", day.Format(time.DateOnly), "rows", rows)
	}
	return first
}

// writeDay writes the file of day and returns its entry; a day without
// results gets no file and an entry of no rows.
func (a *Archiver) writeDay(ctx context.Context, day time.Time) (Entry, error) {
	rel := RelPath(day)
	dir := filepath.Join(a.Dir, filepath.FromSlash(path.Dir(rel)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Entry{}, fmt.Errorf("archive: %w", err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*"+tempSuffix)
	if err != nil {
		return Entry{}, fmt.Errorf("archive: %w", err)
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	var n countingWriter
	p := resultfile.NewParquet(io.MultiWriter(bw, h, &n))
	var rows int64
	err = a.Results.DayResults(ctx, day, func(batch []*pb.PublicResult) error {
		rows += int64(len(batch))
		return p.Write(batch)
	})
	if err == nil {
		err = p.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return Entry{}, discard(f, fmt.Errorf("write %s: %w", rel, err))
	}
	if rows == 0 {
		return Entry{}, discard(f, nil)
	}
	if err := commit(f, filepath.Join(dir, FileName(day))); err != nil {
		return Entry{}, err
	}
	return Entry{Day: day.UTC().Format(time.DateOnly), Path: rel, Rows: rows, Bytes: int64(n), SHA256: hex.EncodeToString(h.Sum(nil)),
		SchemaVersion: dataset.SchemaVersion, Licence: dataset.Licence}, nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// present reports whether the file of e is on disk with its size: a
// file removed by hand is written again (its SHA-256 is read only before
// retiring a day, as reading every file at every run would cost too much).
func present(dir string, e Entry) bool {
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(e.Path)))
	return err == nil && fi.Size() == e.Bytes
}

// verify checks the file of e against its size and SHA-256.
func verify(dir string, e Entry) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(e.Path)))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != e.Bytes || sum != e.SHA256 {
		return fmt.Errorf("%s has %d bytes of SHA-256 %s; the manifest says %d bytes of %s", f.Name(), n, sum, e.Bytes, e.SHA256)
	}
	return nil
}

// prepare makes dir if need be and checks that files can be made in it,
// so that a directory the collector cannot write is reported before any
// work, and by name.
func prepare(dir string) error {
	if dir == "" {
		return errors.New("archive: no directory given")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("archive: directory: %w", err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("archive: directory %s is not writable: %w", dir, err)
	}
	return discard(f, nil)
}

// removeTemps removes the temporary files of writes cut short. Only the
// holder of the lock writes, so none is in progress.
func removeTemps(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tempPrefix) && strings.HasSuffix(d.Name(), tempSuffix) {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive: remove unfinished files: %w", err)
	}
	return nil
}

// commit makes the temporary file f dst: synced, readable by all, renamed
// over dst, the rename synced.
func commit(f *os.File, dst string) error {
	err := f.Sync()
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err != nil {
		return discard(f, fmt.Errorf("write %s: %w", dst, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("archive: write %s: %w", dst, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("archive: %w", err)
	}
	// Best effort: some file systems (NFS among them) refuse to sync a
	// directory, and the rename is then as durable as they make it.
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// discard closes and removes the temporary file f and returns err, with
// context.
func discard(f *os.File, err error) error {
	f.Close()
	os.Remove(f.Name())
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// Every runs a.Run with o at once, then every interval until ctx ends,
// and hands each run's outcome to report.
func (a *Archiver) Every(ctx context.Context, interval time.Duration, o Options, report func(Stats, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		report(a.Run(ctx, o))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
