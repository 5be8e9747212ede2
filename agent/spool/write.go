package spool

import (
	"errors"
	"fmt"
	"os"
)

// Append spools one record and returns once it is on stable storage. It
// returns a *DropError if the record was dropped (ErrFull if the spool has
// no room for it).
func (s *Spool) Append(id string, payload []byte) error {
	return s.AppendBatch([]Record{{ID: id, Payload: payload}})
}

// AppendBatch spools records in order, with one write and one fsync, and
// returns once they are on stable storage; a crash before it returns may
// keep any prefix of them. If the spool has no room for them all, even
// after reclaiming acknowledged segments, it keeps the longest prefix that
// fits, drops the rest (the newest), and returns a *DropError that wraps
// ErrFull. If writing them fails (after reclaiming
// acknowledged segments and trying again once, when the file system is
// full), it drops them all and returns a *DropError that wraps the error.
// Dropped records are counted in Stats.Lost, which is saved before
// AppendBatch returns. A record that could never be spooled (empty or
// oversized id, an id already pending, a payload over 16 MiB) fails the
// whole batch before anything is written or counted.
func (s *Spool) AppendBatch(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.check(recs); err != nil {
		return err
	}
	fit := s.fit(recs)
	if fit < len(recs) && s.reclaim() {
		fit = s.fit(recs)
	}
	if fit > 0 {
		err := s.write(recs[:fit])
		if noSpace(err) && s.reclaim() {
			err = s.write(recs[:fit])
		}
		if err != nil {
			return s.drop(len(recs), err)
		}
	}
	if fit < len(recs) {
		return s.drop(len(recs)-fit, ErrFull)
	}
	if s.full {
		s.full = false
		s.log.Info("spool: no longer full")
	}
	return nil
}

// fit returns how many of recs, from the first, fit under MaxBytes. The
// caller holds wmu.
func (s *Spool) fit(recs []Record) int {
	s.mu.Lock()
	used := s.bytes
	s.mu.Unlock()
	// Concurrent acks only ever lower s.bytes, so used is a safe bound.
	fit := 0
	for _, r := range recs {
		n := frameLen(r.ID, r.Payload)
		if used+n > s.maxBytes {
			break
		}
		used += n
		fit++
	}
	return fit
}

// reclaim makes room for an append that lacks it: it seals the segment
// being written if it holds acknowledged records, so that it can go once
// the rest are, and deletes the segments whose records are all
// acknowledged. It reports whether that freed anything. The caller holds
// wmu.
func (s *Spool) reclaim() bool {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.mu.Lock()
	if seg := s.active; seg != nil && seg.live < len(seg.recs) {
		// The next append rolls: a segment is deleted only once sealed,
		// and a spool smaller than a segment would otherwise never roll.
		seg.sealed = true
		s.active = nil
	}
	before := s.bytes
	s.mu.Unlock()
	s.reap()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes < before
}

// drop counts n records dropped because of err (ErrFull or a write
// error), saves the counts and returns the *DropError. The caller holds
// wmu.
func (s *Spool) drop(n int, err error) error {
	s.mu.Lock()
	s.countLost(n, err)
	total := s.lost
	s.mu.Unlock()
	s.saveLoss()
	if errors.Is(err, ErrFull) && !s.full {
		// Once per episode: the daemon reports the count, the log only
		// marks when it started.
		s.full = true
		s.log.Warn("spool: full, dropping new records", "max_bytes", s.maxBytes, "dropped_total", total.Full)
	}
	return &DropError{Dropped: n, Err: err}
}

// check refuses records that could never be spooled. The caller holds wmu.
func (s *Spool) check(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var batch map[string]bool
	if len(recs) > 1 {
		batch = make(map[string]bool, len(recs))
	}
	for _, r := range recs {
		switch {
		case r.ID == "":
			return errors.New("spool: append: empty id")
		case len(r.ID) > maxIDLen:
			return fmt.Errorf("spool: append: id of %d bytes, more than %d", len(r.ID), maxIDLen)
		case idLenLen+len(r.ID)+len(r.Payload) > maxBodyLen:
			return fmt.Errorf("spool: append %s: record of %d bytes, more than %d", r.ID, idLenLen+len(r.ID)+len(r.Payload), maxBodyLen)
		case s.byID[r.ID] != nil || batch[r.ID]:
			// Ack names records by id, so a second pending copy could
			// never be acknowledged on its own.
			return fmt.Errorf("spool: append %s: id already pending", r.ID)
		}
		if batch != nil {
			batch[r.ID] = true
		}
	}
	return nil
}

// write appends the frames of recs to the active segment, syncs them, and
// publishes them to the reader. The caller holds wmu.
func (s *Spool) write(recs []Record) error {
	buf := s.buf[:0]
	for _, r := range recs {
		buf = appendFrame(buf, r.ID, r.Payload)
	}
	if cap(buf) <= 1<<20 { // do not pin the memory of one huge batch
		s.buf = buf
	}
	if s.active == nil || s.activeEnd > 0 && s.activeEnd+int64(len(buf)) > s.segmentBytes {
		if err := s.roll(); err != nil {
			return fmt.Errorf("spool: append: %w", err)
		}
	}
	seg := s.active
	if err := s.syncWrite(seg.f, buf); err != nil {
		// What the file holds after a failed write or fsync is unknown
		// (after a failed fsync even the page cache cannot be trusted),
		// so the segment is never written again: the next append starts
		// a new one, and the next Open checks this one frame by frame.
		// Cutting it back is only tidying.
		_ = seg.f.Truncate(s.activeEnd)
		s.mu.Lock()
		seg.sealed = true
		s.mu.Unlock()
		s.active = nil
		return fmt.Errorf("spool: append: %w", err)
	}
	s.mu.Lock()
	off := s.activeEnd
	for _, r := range recs {
		n := frameLen(r.ID, r.Payload)
		pr := &rec{id: r.ID, seg: seg, off: off, size: n}
		seg.recs = append(seg.recs, pr)
		s.byID[r.ID] = pr
		off += n
	}
	seg.live += len(recs)
	seg.size += int64(len(buf))
	s.pending += len(recs)
	s.bytes += int64(len(buf))
	s.mu.Unlock()
	s.activeEnd += int64(len(buf))
	return nil
}

// roll seals the active segment and starts a new one. The caller holds wmu.
func (s *Spool) roll() error {
	seq := s.nextSeq
	// Advanced even on failure, so that a retry does not trip over a file
	// left half-made.
	s.nextSeq++
	// Open deletes ack logs without segment, but a deletion the power cut
	// took back could still be waiting: a new segment starts with none.
	if err := os.Remove(s.path(seq, ackExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(s.path(seq, segExt), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// Without this an fsynced record could vanish with its file's name.
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	seg := &segment{seq: seq, f: f}
	s.mu.Lock()
	if s.active != nil {
		s.active.sealed = true
	}
	s.segs = append(s.segs, seg)
	s.mu.Unlock()
	s.active = seg
	s.activeEnd = 0
	return nil
}

// syncWrite appends b to f and syncs it.
func syncWrite(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}
