// Package spool is the agent's on-disk queue of results awaiting delivery:
// crash-safe, bounded and checksummed. The prober appends records; the
// uploader takes the oldest pending ones, sends them, and acknowledges those
// the collector confirmed. Delivery is at least once: a record is handed out
// again until it is acknowledged, and once acknowledged it is never handed
// out again, across crashes and restarts.
//
// # Guarantees
//
//   - Durable appends: Append and AppendBatch return only once their records
//     are on stable storage, with one fsync per call (batch to amortize it;
//     one more saves the loss counts when records are dropped). A crash loses
//     only records whose append had not returned.
//   - Durable acknowledgements: Ack returns once they are on stable storage.
//     On a full disk, where an ack log cannot grow, acknowledging the last
//     pending records of a segment no longer written deletes it instead.
//   - Damage is detected, never delivered: every frame carries a CRC-32C. On
//     Open a segment is cut at its first torn or damaged frame, which is
//     counted in Stats.CorruptRecords and logged; what followed it in that
//     segment is lost, later segments are still read. A record found damaged
//     when read for delivery is dropped and counted the same way. No file
//     content makes Open fail or panic, only I/O errors do.
//   - Bounded: when an append would take the segment files past
//     Options.MaxBytes, the new records are dropped, never old ones, and the
//     call returns a *DropError wrapping ErrFull. Old results are no less
//     valuable than new ones, and never deleting an unacknowledged record
//     keeps the acknowledgement bookkeeping simple. Acknowledged records are
//     reclaimed a segment at a time; before dropping anything, an append
//     seals the segment being written if it holds acknowledged records, and
//     deletes the segments whose records are all acknowledged, so that
//     whatever MaxBytes (segments are at most an eighth of it by default),
//     only pending records and the acknowledged ones that share a segment
//     with them take room.
//   - Every loss is counted, durably: records dropped because the spool is
//     full, because the file system is (after reclaiming what it can), or
//     because writing them failed, and damaged records, are counted by cause
//     in Stats.Lost, which the LOSS file keeps across restarts and crashes.
//   - One writer (Append, AppendBatch) and one reader (Pending, Ack) may run
//     concurrently. On Linux the directory is locked against a second process.
//
// # On-disk format
//
// The directory holds numbered segments (000000000001.seg, ...), the ack
// log of each segment beside it (000000000001.ack), a LOCK file and the
// LOSS file (loss.go). The format version is the extension: another format
// takes another one.
//
// A segment is a sequence of frames, integers big-endian:
//
//	[body length uint32][CRC-32C (Castagnoli) of body length and body uint32]
//	body: [id length uint16][id][payload]
//
// A body is at most 16 MiB; a greater length is damage. A segment is
// written only by the process that created it, and only up to
// Options.SegmentBytes (a batch is never split: a larger one gets a segment
// of its own). Each Open starts a new segment at its first append, so a cut
// tail is never written over and an ack entry can never come to name
// another record.
//
// An ack log is a sequence of 12-byte entries, one per acknowledged record:
//
//	[offset of the record's frame in the segment uint64][CRC-32C of the offset uint32]
//
// A torn last entry is cut on Open; an entry that fails its checksum is
// ignored, so its record is delivered again.
//
// A segment no longer written whose records are all acknowledged is
// deleted: the segment first, then, once the directory is synced, its ack
// log. A crash in between leaves an ack log without segment, which Open
// deletes, never a segment without its acknowledgements, which would be
// delivered again.
package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// Defaults for zero Options fields.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultSegmentBytes = 4 << 20
)

var (
	// ErrFull is wrapped in the DropError of Append and AppendBatch when
	// records were dropped because the spool would have grown past
	// Options.MaxBytes.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned by calls on a closed Spool.
	ErrClosed = errors.New("spool: closed")
)

// Options configure a Spool; the zero value is usable.
type Options struct {
	// MaxBytes bounds the total size of the segment files; 0 means
	// DefaultMaxBytes. Acknowledged records count until their segment is
	// deleted.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started; 0 means
	// DefaultSegmentBytes, or MaxBytes/8 if that is smaller. Space is
	// reclaimed a whole segment at a time, so that small segments keep
	// the acknowledged records that take room few.
	SegmentBytes int64
	// Logger receives damage and full-spool reports; nil discards them.
	Logger *slog.Logger

	// There is deliberately no option to skip or defer fsync: a result
	// the prober was told is spooled must survive a power cut. Callers
	// amortize fsync with AppendBatch.
}

// Record is one spooled result.
type Record struct {
	// ID names the record in Ack; it is unique among pending records.
	ID      string
	Payload []byte
}

// Stats describes a Spool. The counters but Lost count since Open.
type Stats struct {
	Pending int   // records not yet acknowledged
	Bytes   int64 // size of the segment files
	// DroppedFull counts records dropped because the spool was full
	// (Lost.Full counts them since the count began).
	DroppedFull int64
	// CorruptRecords counts damaged frames: each torn or damaged frame cut
	// on Open (what followed it in its segment is lost with it, uncounted)
	// and each record dropped because it failed to read back.
	CorruptRecords int64
	Segments       int // segment files
	// Lost counts the records lost by cause since the count began,
	// across restarts.
	Lost Loss
}

// A Spool is a directory of segments. Lock order: wmu, amu, lmu, mu.
type Spool struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	log          *slog.Logger
	unlock       func() error
	// syncWrite appends to a segment and syncs it; tests make it fail
	// as a full or broken disk does.
	syncWrite func(f *os.File, b []byte) error

	// wmu serializes writers; it guards the fields below it.
	wmu       sync.Mutex
	active    *segment // the segment appended to; nil until the first append
	activeEnd int64    // size of active as this process wrote it
	nextSeq   uint64
	buf       []byte
	full      bool // the last append found the spool full; to log only changes

	// amu serializes Pending and Ack, which alone read segments and write
	// ack logs, and reap, which deletes segments.
	amu sync.Mutex

	// lmu serializes saveLoss; it guards the fields below it.
	lmu         sync.Mutex
	lossFile    *os.File // nil while it could not be made
	lossSeq     uint64   // of the newest slot
	lossID      [16]byte
	lossSaved   Loss // the counts on stable storage
	lossFailing bool // the last save failed; to log only changes

	// mu guards the fields below it and those of segments and records. It
	// is held for bookkeeping only, never across I/O, so that neither side
	// waits for the other's fsync.
	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first
	byID     map[string]*rec
	pending  int
	bytes    int64
	dropped  int64
	corrupts int64
	lost     Loss
}

// segment is one segment file and its records.
type segment struct {
	seq uint64
	f   *os.File
	ack *os.File // ack log, opened at the first Ack; guarded by amu
	// ackEnd is the size of the ack log as far as it is known good; guarded by amu.
	ackEnd int64

	size   int64  // bytes of published frames
	recs   []*rec // in file order
	head   int    // recs[:head] are all done
	live   int    // records not done
	sealed bool   // no longer written: it may be deleted once live is 0
}

// rec is the index entry of one record; its payload stays on disk.
type rec struct {
	id        string
	seg       *segment
	off, size int64
	done      bool // acknowledged, or dropped as damaged or duplicate
}

// Open opens the spool in dir, creating dir if needed, and recovers its
// state: it reads every segment, cuts torn or damaged tails, and deletes
// segments whose records are all acknowledged.
func Open(dir string, opts Options) (*Spool, error) {
	maxBytes := orDefault(opts.MaxBytes, DefaultMaxBytes)
	s := &Spool{
		dir:          dir,
		maxBytes:     maxBytes,
		segmentBytes: orDefault(opts.SegmentBytes, max(1, min(DefaultSegmentBytes, maxBytes/8))),
		log:          opts.Logger,
		nextSeq:      1,
		byID:         make(map[string]*rec),
		syncWrite:    syncWrite,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	s.unlock = unlock
	err = s.openLoss()
	if err == nil {
		err = s.load()
	}
	if err != nil {
		for _, seg := range s.segs {
			seg.f.Close()
		}
		if s.lossFile != nil {
			s.lossFile.Close()
		}
		unlock()
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	s.saveLoss() // the damage load cut
	s.reap()
	return s, nil
}

// orDefault returns v, or def if v is not positive.
func orDefault(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}

// load reads the directory into s.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var segs []uint64
	acks := make(map[uint64]bool)
	for _, e := range entries {
		seq, ext, ok := parseFileName(e.Name())
		if !ok {
			continue
		}
		// Numbers are never reused while any file bears them: a new
		// segment must not inherit an old ack log.
		s.nextSeq = max(s.nextSeq, seq+1)
		if !e.Type().IsRegular() {
			continue
		}
		if ext == segExt {
			segs = append(segs, seq)
		} else {
			acks[seq] = true
		}
	}
	slices.Sort(segs)
	for _, seq := range segs {
		delete(acks, seq)
	}
	for seq := range acks {
		// Left by a crash while deleting a fully acknowledged segment.
		if err := os.Remove(s.path(seq, ackExt)); err != nil {
			return err
		}
	}
	for _, seq := range segs {
		if err := s.loadSegment(seq); err != nil {
			return err
		}
	}
	return nil
}

// loadSegment reads segment seq and its ack log into s.
func (s *Spool) loadSegment(seq uint64) error {
	acked, err := s.loadAcks(seq)
	if err != nil {
		return err
	}
	path := s.path(seq, segExt)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	seg := &segment{seq: seq, f: f, sealed: true}
	s.segs = append(s.segs, seg) // for Open to close f on error
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	dups := 0
	end, damage, err := scan(f, fi.Size(), func(fr frameInfo) {
		r := &rec{id: fr.id, seg: seg, off: fr.off, size: fr.size}
		seg.recs = append(seg.recs, r)
		switch {
		case acked[fr.off]:
			r.done = true
		case s.byID[fr.id] != nil:
			// Append refuses duplicates, so this is a foreign or
			// forged file; delivering the first copy is enough.
			r.done = true
			dups++
		default:
			s.byID[fr.id] = r
			seg.live++
			s.pending++
		}
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if dups > 0 {
		s.log.Warn("spool: duplicate ids ignored", "segment", path, "records", dups)
	}
	if damage != "" {
		s.corrupts++
		s.lost.Corrupt++
		s.log.Warn("spool: cutting damaged segment", "segment", path, "offset", end,
			"lost_bytes", fi.Size()-end, "damage", damage)
		if err := f.Truncate(end); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	seg.size = end
	s.bytes += end
	seg.advance()
	return nil
}

// loadAcks reads the ack log of segment seq, cutting a torn last entry so
// that later entries stay aligned.
func (s *Spool) loadAcks(seq uint64) (map[int64]bool, error) {
	path := s.path(seq, ackExt)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	acked, whole, bad := parseAcks(b)
	if bad > 0 {
		s.log.Warn("spool: damaged ack entries ignored; their records will be delivered again",
			"ack_log", path, "entries", bad)
	}
	if whole != int64(len(b)) {
		s.log.Warn("spool: cutting torn ack entry", "ack_log", path, "offset", whole)
		if err := truncateSync(path, whole); err != nil {
			return nil, err
		}
	}
	return acked, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Len returns the number of pending records.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Stats returns the spool's figures.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Pending:        s.pending,
		Bytes:          s.bytes,
		DroppedFull:    s.dropped,
		CorruptRecords: s.corrupts,
		Segments:       len(s.segs),
		Lost:           s.lost,
	}
}

// Close waits for calls in progress, closes the files and unlocks the
// directory. Closing a closed Spool does nothing.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.amu.Lock()
	defer s.amu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	s.saveLoss() // a last try, if the last save failed
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	if s.lossFile != nil {
		errs = append(errs, s.lossFile.Close())
	}
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
		if seg.ack != nil {
			errs = append(errs, seg.ack.Close())
		}
	}
	errs = append(errs, s.unlock())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: close %s: %w", s.dir, err)
	}
	return nil
}

// reap deletes the segments that are sealed and fully done. The caller
// holds amu, or is Open.
func (s *Spool) reap() {
	s.mu.Lock()
	var gone []*segment
	kept := make([]*segment, 0, len(s.segs))
	for _, seg := range s.segs {
		if seg.sealed && seg.live == 0 {
			gone = append(gone, seg)
			s.bytes -= seg.size
		} else {
			kept = append(kept, seg)
		}
	}
	s.segs = kept
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	removed := gone[:0]
	for _, seg := range gone {
		seg.f.Close()
		if seg.ack != nil {
			seg.ack.Close()
		}
		// A segment that will not go keeps its ack log, or its records
		// would be delivered again; the next Open retries.
		if err := os.Remove(s.path(seg.seq, segExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: delete acknowledged segment", "err", err)
			continue
		}
		removed = append(removed, seg)
	}
	if err := syncDir(s.dir); err != nil {
		s.log.Error("spool: delete acknowledged segments", "err", err)
		return
	}
	for _, seg := range removed {
		if err := os.Remove(s.path(seg.seq, ackExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: delete ack log", "err", err)
		}
	}
}

// advance moves head past done records. The caller holds mu.
func (seg *segment) advance() {
	for seg.head < len(seg.recs) && seg.recs[seg.head].done {
		seg.recs[seg.head] = nil // for the garbage collector
		seg.head++
	}
}

// done marks r done. The caller holds mu.
func (s *Spool) done(r *rec) {
	r.done = true
	if s.byID[r.id] == r {
		delete(s.byID, r.id)
	}
	r.seg.live--
	s.pending--
	r.seg.advance()
}

func (s *Spool) path(seq uint64, ext string) string {
	return filepath.Join(s.dir, fileName(seq, ext))
}

// syncDir makes file creations and deletions in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		// A directory cannot be flushed there (FlushFileBuffers wants a
		// handle opened for writing, which a directory never is); NTFS
		// journals the entries of a created, renamed or deleted file.
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
