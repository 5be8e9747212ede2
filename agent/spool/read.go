package spool

import (
	"errors"
	"fmt"
	"os"
)

// Pending returns up to max of the oldest records not yet acknowledged,
// oldest first. It does not mark them: until acknowledged they are
// returned again by every call, so the uploader sends them, waits for the
// collector's acknowledgements, and passes those to Ack. Payloads are read
// from disk, so the spool's memory does not grow with its backlog.
//
// A record that cannot be read back intact is dropped, logged and counted
// in Stats.CorruptRecords and Stats.Lost: retrying a damaged record would stop delivery
// forever. Pending returns nil if max < 1 or the spool is closed.
func (s *Spool) Pending(max int) []Record {
	if max < 1 {
		return nil
	}
	s.amu.Lock()
	defer s.amu.Unlock()
	// Segments sealed by the writer after their last ack go here.
	s.reap()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	var want []*rec
collect:
	for _, seg := range s.segs {
		for _, r := range seg.recs[seg.head:] {
			if len(want) == max {
				break collect
			}
			if !r.done {
				want = append(want, r)
			}
		}
	}
	s.mu.Unlock()

	// A record's place and size never change once published, and only
	// amu holders close segment files, so the reads need no lock.
	out := make([]Record, 0, len(want))
	damaged := false
	for _, r := range want {
		frame := make([]byte, r.size)
		_, err := r.seg.f.ReadAt(frame, r.off)
		var id string
		var payload []byte
		if err == nil {
			id, payload, err = decodeFrame(frame)
		}
		if err == nil && id != r.id {
			err = fmt.Errorf("id %q, want %q", id, r.id)
		}
		if err != nil {
			s.log.Error("spool: dropping unreadable record", "segment", r.seg.f.Name(),
				"offset", r.off, "id", r.id, "err", err)
			s.mu.Lock()
			s.done(r)
			s.corrupts++
			s.lost.Corrupt++
			s.mu.Unlock()
			damaged = true
			continue
		}
		out = append(out, Record{ID: id, Payload: payload})
	}
	if damaged {
		s.saveLoss()
	}
	return out
}

// Ack acknowledges the pending records named by ids and returns once that
// is on stable storage: they will never be returned by Pending again, even
// after a restart. Ids not pending are ignored, so that an acknowledgement
// repeated by the collector is harmless.
func (s *Spool) Ack(ids ...string) error {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	// Group by segment, oldest first, each record once.
	var order []*segment
	bySeg := make(map[*segment][]*rec)
	seen := make(map[*rec]bool, len(ids))
	for _, id := range ids {
		r := s.byID[id]
		if r == nil || seen[r] {
			continue
		}
		seen[r] = true
		if bySeg[r.seg] == nil {
			order = append(order, r.seg)
		}
		bySeg[r.seg] = append(bySeg[r.seg], r)
	}
	s.mu.Unlock()

	var errs []error
	var buf []byte
	for _, seg := range order {
		buf = buf[:0]
		for _, r := range bySeg[seg] {
			buf = appendAck(buf, r.off)
		}
		if err := s.writeAcks(seg, buf); err != nil && !(noSpace(err) && s.deleteAcked(seg, len(bySeg[seg]))) {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		for _, r := range bySeg[seg] {
			s.done(r)
		}
		s.mu.Unlock()
	}
	s.reap()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: ack: %w", err)
	}
	return nil
}

// deleteAcked acknowledges the last n pending records of a sealed segment
// by deleting it, which takes no room, when the ack log could not be
// written for lack of it: a disk full of pending records must still take
// their acknowledgements. It reports whether the segment is gone. The
// caller holds amu.
func (s *Spool) deleteAcked(seg *segment, n int) bool {
	s.mu.Lock()
	last := seg.sealed && seg.live == n
	s.mu.Unlock()
	if !last {
		return false
	}
	err := os.Remove(s.path(seg.seq, segExt))
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		s.log.Error("spool: delete acknowledged segment", "err", err)
		return false
	}
	return true
}

// writeAcks appends entries to the ack log of seg and syncs it. The
// caller holds amu.
func (s *Spool) writeAcks(seg *segment, entries []byte) error {
	if seg.ack == nil {
		f, err := os.OpenFile(s.path(seg.seq, ackExt), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			// The log may be new: its name must be as durable as its entries.
			err = syncDir(s.dir)
		}
		if err != nil {
			f.Close()
			return err
		}
		seg.ack, seg.ackEnd = f, fi.Size()
	}
	_, err := seg.ack.Write(entries)
	if err == nil {
		err = seg.ack.Sync()
	}
	if err != nil {
		// Cut a partial entry, or every later one would be misaligned
		// and lost; if that fails too, Open cuts it.
		_ = seg.ack.Truncate(seg.ackEnd)
		return err
	}
	seg.ackEnd += int64(len(entries))
	return nil
}
