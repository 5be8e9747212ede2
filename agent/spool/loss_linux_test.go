package spool

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

// TestLossOnFullTmpfs runs the spool on a real 64 KiB tmpfs: the disk fills
// with pending records, the next appends fail with ENOSPC, are counted,
// and the count is saved although the disk is full (the LOSS file never
// needs a new block) and kept across a restart on the full disk. The
// records are acknowledged on the full disk, and appends work again.
func TestLossOnFullTmpfs(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		testenv.Unavailable(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := open(t, dir, opts)
	n, lost := 0, 0
	for lost == 0 {
		err := s.AppendBatch(batch(n, 6))
		var de *DropError
		switch {
		case errors.As(err, &de) && errors.Is(err, syscall.ENOSPC):
			lost = de.Dropped
		case err != nil:
			t.Fatalf("AppendBatch() = %v; want success or ENOSPC", err)
		}
		n += 6
		if n > 1000 {
			t.Fatal("64 KiB took 1,000 records")
		}
	}
	pending := s.Len()
	// Fill what the failed write gave back, so that the disk is full when
	// the next drop is counted.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 1024))
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	dropped(t, s.AppendBatch(batch(n, 6)), 6, syscall.ENOSPC)
	checkLoss(t, s, Loss{NoSpace: int64(lost + 6)})
	t.Logf("%d records pending on a 64 KiB tmpfs, %d dropped with ENOSPC", pending, lost+6)

	s = reopen(t, s, opts)
	checkLoss(t, s, Loss{NoSpace: int64(lost + 6)})
	if s.Len() != pending {
		t.Errorf("reopened: %d pending; want %d", s.Len(), pending)
	}
	// The disk is still full: the acknowledgements take no room.
	if err := s.Ack(ids(s.Pending(pending))...); err != nil {
		t.Fatalf("Ack() on a full disk = %v", err)
	}
	for i := range 3 * n / 6 { // three times what filled the disk
		if err := s.AppendBatch(batch(10_000+6*i, 6)); err != nil {
			t.Fatalf("AppendBatch() %d after the records were acknowledged = %v", i, err)
		}
		if err := s.Ack(ids(s.Pending(6))...); err != nil {
			t.Fatal(err)
		}
	}
	checkLoss(t, s, Loss{NoSpace: int64(lost + 6)})
}
