package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// batch is n records of a serialized ProbeResult's size, numbered from.
func batch(from, n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{ID: fmt.Sprintf("0190e0a4-7c2e-7000-8000-%012d", from+i), Payload: bytes.Repeat([]byte{byte(i)}, 600)}
	}
	return recs
}

// checkLoss checks s's loss counts (all but the id) and that the LOSS
// file holds them.
func checkLoss(t *testing.T, s *Spool, want Loss) {
	t.Helper()
	got := s.Stats().Lost
	want.SpoolID = got.SpoolID
	if got != want {
		t.Errorf("Stats().Lost = %+v; want %+v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, lossName))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, saved, ok := parseLoss(b); !ok || saved != got {
		t.Errorf("the LOSS file holds %+v (intact: %v); want %+v", saved, ok, got)
	}
}

// dropped checks that err reports n records dropped for cause.
func dropped(t *testing.T, err error, n int, cause error) {
	t.Helper()
	var de *DropError
	if !errors.As(err, &de) || de.Dropped != n || !errors.Is(err, cause) {
		t.Fatalf("AppendBatch() = %v; want a DropError of %d records for %v", err, n, cause)
	}
}

// TestLossByCause drops records because the spool is full, because the
// disk is (ENOSPC from an injected writer), and because writing failed
// otherwise (EIO), and checks that each is counted under its cause,
// saved, and kept across a restart under the same spool id.
func TestLossByCause(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 3 * frameLen(batch(0, 1)[0].ID, batch(0, 1)[0].Payload)}
	s := open(t, dir, opts)
	id := s.Stats().Lost.SpoolID
	if id == "" {
		t.Fatal("Stats().Lost.SpoolID is empty")
	}
	checkLoss(t, s, Loss{})

	dropped(t, s.AppendBatch(batch(0, 5)), 2, ErrFull)
	checkLoss(t, s, Loss{Full: 2})

	// Nothing to reclaim: the retry after ENOSPC must not happen.
	if err := s.Ack(ids(s.Pending(10))...); err != nil {
		t.Fatal(err)
	}
	writes := 0
	s.syncWrite = func(*os.File, []byte) error { writes++; return fmt.Errorf("write: %w", syscall.ENOSPC) }
	dropped(t, s.AppendBatch(batch(10, 2)), 2, syscall.ENOSPC)
	checkLoss(t, s, Loss{Full: 2, NoSpace: 2})
	if writes != 1 {
		t.Errorf("%d writes; want 1, no retry when nothing could be reclaimed", writes)
	}
	s.syncWrite = func(*os.File, []byte) error { return syscall.EIO }
	dropped(t, s.AppendBatch(batch(20, 1)), 1, syscall.EIO)
	checkLoss(t, s, Loss{Full: 2, NoSpace: 2, WriteError: 1})
	if st := s.Stats(); st.Pending != 0 || st.DroppedFull != 2 {
		t.Errorf("Stats() = %+v; want nothing pending, 2 dropped full", st)
	}

	s.syncWrite = syncWrite
	if err := s.AppendBatch(batch(30, 2)); err != nil {
		t.Fatalf("AppendBatch() once the disk works again = %v", err)
	}
	s = reopen(t, s, opts)
	checkLoss(t, s, Loss{Full: 2, NoSpace: 2, WriteError: 1})
	if st := s.Stats(); st.Lost.SpoolID != id || st.DroppedFull != 0 || st.Pending != 2 {
		t.Errorf("reopened: Stats() = %+v; want the same spool id %s, the 2 records, DroppedFull since Open 0", st, id)
	}
	dropped(t, s.AppendBatch(batch(40, 3)), 2, ErrFull)
	checkLoss(t, s, Loss{Full: 4, NoSpace: 2, WriteError: 1})

	if other := open(t, t.TempDir(), opts).Stats().Lost; other.SpoolID == id || other.Total() != 0 {
		t.Errorf("a new directory: Stats().Lost = %+v; want a count of its own from zero", other)
	}
}

// TestNoSpaceRetriesAfterReclaiming: when the disk is full of acknowledged
// records, the append deletes their segments and tries again, and nothing
// is lost.
func TestNoSpaceRetriesAfterReclaiming(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	if err := s.AppendBatch(batch(0, 6)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ids(s.Pending(6))...); err != nil {
		t.Fatal(err)
	}
	failed := false
	s.syncWrite = func(f *os.File, b []byte) error {
		if !failed {
			failed = true
			return syscall.ENOSPC
		}
		return syncWrite(f, b)
	}
	if err := s.AppendBatch(batch(6, 6)); err != nil {
		t.Fatalf("AppendBatch() with the disk full of acknowledged records = %v; want them reclaimed and the batch spooled", err)
	}
	checkRecords(t, s, batch(6, 6))
	checkLoss(t, s, Loss{})
	if got := len(files(t, s.dir)); got != 1 {
		t.Errorf("%d segment files; want 1, the one written", got)
	}
}

// checkRecords checks that the pending records are recs, intact.
func checkRecords(t *testing.T, s *Spool, recs []Record) {
	t.Helper()
	got := s.Pending(len(recs) + 1)
	if len(got) != len(recs) {
		t.Fatalf("Pending() = %d records; want %d", len(got), len(recs))
	}
	for i := range got {
		if got[i].ID != recs[i].ID || !bytes.Equal(got[i].Payload, recs[i].Payload) {
			t.Fatalf("Pending()[%d] = %s; want %s intact", i, got[i].ID, recs[i].ID)
		}
	}
}

// TestLossFileDamage: a torn update loses at most that update; a LOSS file
// with no intact slot starts a new count under a new id, said in the log.
func TestLossFileDamage(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 1}
	s := open(t, dir, opts)
	id := s.Stats().Lost.SpoolID
	dropped(t, s.AppendBatch(batch(0, 3)), 3, ErrFull)
	dropped(t, s.AppendBatch(batch(0, 4)), 4, ErrFull) // the newer slot
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, lossName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newer := 0
	if seq, _, _, _ := parseLoss(b); seq%2 == 1 {
		newer = lossSlotLen
	}
	torn := bytes.Clone(b)
	torn[newer+30] ^= 0xff
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, opts)
	if got := s.Stats().Lost; got.SpoolID != id || got.Full != 3 {
		t.Errorf("newest slot torn: Stats().Lost = %+v; want the older slot's 3 under %s", got, id)
	}
	dropped(t, s.AppendBatch(batch(0, 1)), 1, ErrFull)
	checkLoss(t, s, Loss{Full: 4})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for name, content := range map[string][]byte{"garbage": bytes.Repeat([]byte("x"), 2*lossSlotLen), "empty": nil, "short": b[:10]} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		var logged strings.Builder
		s, err := Open(dir, Options{MaxBytes: 1, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err != nil {
			t.Fatalf("%s: Open() = %v", name, err)
		}
		if got := s.Stats().Lost; got.SpoolID == id || got.SpoolID == "" || got.Total() != 0 {
			t.Errorf("%s LOSS file: Stats().Lost = %+v; want a new count from zero under a new id", name, got)
		}
		if want := "counting anew"; (content != nil) != strings.Contains(logged.String(), want) {
			t.Errorf("%s LOSS file: log %q; want %q logged only if there was something", name, logged.String(), want)
		}
		checkLoss(t, s, Loss{})
		s.Close()
	}
}
