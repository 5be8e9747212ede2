package asn

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Source is the snapshot currently in force, reloaded from its files when
// asked ([Source.Reload], e.g. on SIGHUP) or when they change
// ([Source.Watch]). A reload that fails keeps the previous table.
type Source struct {
	log    *slog.Logger
	format Format
	paths  []string

	table atomic.Pointer[Table] // the read path: no lock

	reloadMu sync.Mutex  // one reload at a time: Watch and SIGHUP may coincide
	seen     []fileStamp // guarded by reloadMu: the files as of the last attempt

	statsMu sync.Mutex // separate from reloadMu so that Stats never waits for a load
	stats   Stats
}

// Stats counts reloads, for metrics.
type Stats struct {
	Reloads  uint64 // successful, not counting the initial load
	Failures uint64
	// LastError is the error of the latest reload, empty if it succeeded:
	// non-empty means the files on disk are not the snapshot in force.
	LastError string
}

// fileStamp is what Watch compares to notice that a file changed.
type fileStamp struct {
	modTime int64 // ns since the epoch
	size    int64
	missing bool
}

// NewSource loads the snapshot from paths (see [LoadFiles]). Failing to load
// is an error here, since there is no previous table to keep. log may be nil.
func NewSource(log *slog.Logger, format Format, paths ...string) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{log: log, format: format, paths: slices.Clone(paths)}
	s.seen = stamp(s.paths)
	start := time.Now()
	t, err := LoadFiles(format, s.paths...)
	if err != nil {
		return nil, err
	}
	s.table.Store(t)
	s.logLoaded("asn table loaded", t, time.Since(start))
	return s, nil
}

// Current returns the table in force. It never blocks; keep the returned
// table to attribute a result and record its [Meta].SHA256 with it.
func (s *Source) Current() *Table {
	return s.table.Load()
}

// Reload loads the files again and, if that succeeds, puts the new table in
// force. On failure it logs and returns the error and the previous table
// stays in force.
func (s *Source) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	// Stamp before reading: a change during the read then shows up as a
	// change at the next poll instead of being missed.
	s.seen = stamp(s.paths)
	start := time.Now()
	t, err := LoadFiles(s.format, s.paths...)

	s.statsMu.Lock()
	if err != nil {
		s.stats.Failures++
		s.stats.LastError = err.Error()
	} else {
		s.stats.Reloads++
		s.stats.LastError = ""
	}
	s.statsMu.Unlock()

	if err != nil {
		s.log.Error("asn table reload failed, keeping the previous table",
			"err", err, "sha256", s.Current().meta.SHA256)
		return err
	}
	s.table.Store(t)
	s.logLoaded("asn table reloaded", t, time.Since(start))
	return nil
}

// Watch polls the files' modification time and size every interval and
// reloads once a change has held for a whole interval, so that a file still
// being written is not loaded half-way (replacing files by rename is better
// still). A file that failed to load is not retried until it changes again:
// a broken file is logged once, not at every poll. Watch returns ctx.Err()
// when ctx is done.
func (s *Source) Watch(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("asn: watch interval %v: must be positive", interval)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var changed []fileStamp // a change seen at the previous poll
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := stamp(s.paths)
		s.reloadMu.Lock()
		switch {
		case slices.Equal(now, s.seen):
			changed = nil
		case !slices.Equal(now, changed):
			changed = now // wait one interval for it to settle
		default:
			changed = nil
			_ = s.reloadLocked() // logged and counted
		}
		s.reloadMu.Unlock()
	}
}

// Stats returns the reload counters.
func (s *Source) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

func (s *Source) logLoaded(msg string, t *Table, took time.Duration) {
	m := t.meta
	s.log.Info(msg, "paths", m.Paths, "format", m.Format.String(), "sha256", m.SHA256,
		"prefixes4", m.Prefixes4, "prefixes6", m.Prefixes6, "took", took.Round(time.Millisecond))
}

func stamp(paths []string) []fileStamp {
	st := make([]fileStamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			st[i] = fileStamp{missing: true}
			continue
		}
		st[i] = fileStamp{modTime: fi.ModTime().UnixNano(), size: fi.Size()}
	}
	return st
}
