package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/op25b/observatory/internal/uuidv7"
)

// Loss counts the records lost before delivery, by cause, since the count
// began: it is kept in the directory's LOSS file, so that neither a restart
// nor a crash resets it. Only a new directory, or one whose LOSS file was
// lost or damaged, starts a new count, under a new SpoolID, so that whoever
// adds the counts up (the collector) can tell a new count from an old one.
type Loss struct {
	// SpoolID names the count: a version 7 UUID made when it began.
	SpoolID string
	// Full counts records dropped because the spool was at
	// Options.MaxBytes.
	Full int64
	// NoSpace counts records dropped because the file system was full
	// (ENOSPC) or the user's quota spent (EDQUOT).
	NoSpace int64
	// WriteError counts records dropped because writing or syncing them
	// failed otherwise (an I/O error, a read-only file system...). When a
	// sync failed after the write, a later Open may still find some of
	// them intact and deliver them: counted lost, they are then
	// delivered all the same.
	WriteError int64
	// Corrupt counts damaged records (Stats.CorruptRecords): at least one
	// per damaged segment tail, as a crash during an append leaves.
	Corrupt int64
}

// Total is the number of records lost, whatever the cause.
func (l Loss) Total() int64 { return l.Full + l.NoSpace + l.WriteError + l.Corrupt }

// The LOSS file holds two slots, each a complete copy of the counts:
//
//	["OPL1"][sequence uint64][spool id, 16 bytes][full, no space, write error, corrupt: uint64 each][CRC-32C of the rest uint32]
//
// An update overwrites the slot with the older sequence in place and
// syncs it. A torn update leaves the other slot intact, and the file's
// blocks are allocated when it is made, so that an update needs no free
// space: counting ENOSPC drops must work on a full disk.
const (
	lossName    = "LOSS"
	lossMagic   = "OPL1"
	lossSlotLen = 64
)

func appendLossSlot(b []byte, seq uint64, id [16]byte, l Loss) []byte {
	start := len(b)
	b = append(b, lossMagic...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, id[:]...)
	for _, n := range []int64{l.Full, l.NoSpace, l.WriteError, l.Corrupt} {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseLoss returns the newest intact slot of a LOSS file.
func parseLoss(b []byte) (seq uint64, id [16]byte, l Loss, ok bool) {
	for off := 0; off+lossSlotLen <= len(b) && off < 2*lossSlotLen; off += lossSlotLen {
		e := b[off : off+lossSlotLen]
		if string(e[:4]) != lossMagic || crc32.Checksum(e[:lossSlotLen-4], castagnoli) != binary.BigEndian.Uint32(e[lossSlotLen-4:]) {
			continue
		}
		if s := binary.BigEndian.Uint64(e[4:]); !ok || s > seq {
			seq, ok = s, true
			copy(id[:], e[12:28])
			n := func(i int) int64 { return int64(binary.BigEndian.Uint64(e[28+8*i:])) }
			l = Loss{SpoolID: uuidv7.Format(id), Full: n(0), NoSpace: n(1), WriteError: n(2), Corrupt: n(3)}
		}
	}
	return seq, id, l, ok
}

// openLoss reads the LOSS file into s, or begins a new count if there is
// none or it is damaged. Only I/O errors make it fail; when the new file
// cannot be made (the disk is full), the counts are kept in memory and
// saveLoss tries again.
func (s *Spool) openLoss() error {
	path := filepath.Join(s.dir, lossName)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	seq, id, l, ok := parseLoss(b)
	switch {
	case ok && len(b) == 2*lossSlotLen:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		s.lossFile, s.lossSeq, s.lossID, s.lost, s.lossSaved = f, seq, id, l, l
		return nil
	case ok:
		// Cut short: made again below, with the same id and counts.
		s.lossSeq, s.lossID, s.lost = seq, id, l
	default:
		if len(b) > 0 {
			s.log.Warn("spool: the loss counts are damaged; counting anew under a new spool id (the collector keeps the counts it had)",
				"file", path)
		}
		u, _, _ := uuidv7.Parse(uuidv7.New(time.Now()))
		s.lossID, s.lost = u, Loss{SpoolID: uuidv7.Format(u)}
	}
	if err := s.makeLoss(s.lost); err != nil {
		s.log.Error("spool: cannot save the loss counts; they are kept in memory and saved at the next change", "err", err)
		s.lossFailing = true
	}
	return nil
}

// makeLoss writes a new LOSS file holding l in both slots, atomically:
// a crash leaves the old file or the new one. The caller holds lmu, or is
// Open.
func (s *Spool) makeLoss(l Loss) error {
	path := filepath.Join(s.dir, lossName)
	b := appendLossSlot(nil, s.lossSeq, s.lossID, l)
	b = appendLossSlot(b, s.lossSeq, s.lossID, l)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.lossFile, s.lossSaved = f, l
	return nil
}

// saveLoss puts the counts on stable storage if they changed since they
// last were. A failure is logged once and retried at the next call; the
// counts stay in memory and are reported all the same.
func (s *Spool) saveLoss() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.mu.Lock()
	l := s.lost
	s.mu.Unlock()
	if l == s.lossSaved && s.lossFile != nil {
		return
	}
	var err error
	if s.lossFile == nil {
		err = s.makeLoss(l)
	} else {
		seq := s.lossSeq + 1
		_, err = s.lossFile.WriteAt(appendLossSlot(nil, seq, s.lossID, l), int64(seq%2)*lossSlotLen)
		if err == nil {
			err = s.lossFile.Sync()
		}
		if err == nil {
			s.lossSeq, s.lossSaved = seq, l
		}
	}
	if err != nil {
		if !s.lossFailing {
			s.log.Error("spool: cannot save the loss counts; they are kept in memory and saved at the next change", "err", err)
		}
		s.lossFailing = true
		return
	}
	if s.lossFailing {
		s.log.Info("spool: the loss counts are saved again")
	}
	s.lossFailing = false
}

// countLost adds n records lost to the count of the cause of err (ErrFull,
// or an error writing them). The caller holds mu.
func (s *Spool) countLost(n int, err error) {
	switch {
	case errors.Is(err, ErrFull):
		s.lost.Full += int64(n)
		s.dropped += int64(n)
	case noSpace(err):
		s.lost.NoSpace += int64(n)
	default:
		s.lost.WriteError += int64(n)
	}
}

// noSpace reports whether err says that the file system has no room left.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// A DropError reports records that AppendBatch dropped, and counted in
// Stats.Lost: the newest Dropped records of the batch; those before them
// are spooled.
type DropError struct {
	Dropped int
	// Err is ErrFull, or the error writing them.
	Err error
}

func (e *DropError) Error() string {
	return fmt.Sprintf("%v: %d records dropped", e.Err, e.Dropped)
}

func (e *DropError) Unwrap() error { return e.Err }
