package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open as a segment and its ack log. Open
// must not fail or panic, must hand out only intact records, once each,
// and must leave a directory that reopens without damage.
func FuzzOpen(f *testing.F) {
	two := appendFrame(appendFrame(nil, "r0", []byte("payload")), "r1", nil)
	f.Add(two, appendAck(nil, 0))
	f.Add(two[:len(two)-3], []byte{})
	f.Add(appendFrame(appendFrame(nil, "r0", nil), "r0", []byte("same id")), appendAck(nil, 99)[:7])
	f.Fuzz(func(t *testing.T, seg, ack []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fileName(1, segExt)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fileName(1, ackExt)), ack, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		defer s.Close()
		st := s.Stats()
		if st.Bytes > int64(len(seg)) || st.CorruptRecords > 1 {
			t.Fatalf("Stats() = %+v from a segment of %d bytes", st, len(seg))
		}
		recs := s.Pending(st.Pending + 1)
		seen := make(map[string]bool)
		for _, r := range recs {
			if seen[r.ID] {
				t.Fatalf("Pending() returned %q twice", r.ID)
			}
			seen[r.ID] = true
			if !bytes.Contains(seg, appendFrame(nil, r.ID, r.Payload)) {
				t.Fatalf("Pending() returned %q, %q, not a frame of the segment", r.ID, r.Payload)
			}
		}
		// With nothing damaged on disk since Open, what is handed out is
		// exactly what Open counted.
		if got := s.Stats(); len(recs) != st.Pending || got.CorruptRecords != st.CorruptRecords {
			t.Fatalf("Pending() returned %d records, Stats() %+v then %+v", len(recs), st, got)
		}
		// The directory stays writable; "new" is refused only if pending.
		if err := s.Append("new", []byte("after")); (err != nil) != seen["new"] {
			t.Fatalf("Append() = %v with %q pending: %v", err, "new", seen["new"])
		}
		var all []string
		for id := range seen {
			all = append(all, id)
		}
		if err := s.Ack(all...); err != nil {
			t.Fatalf("Ack() = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}

		s, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("reopen: Open() = %v", err)
		}
		defer s.Close()
		if st := s.Stats(); st.CorruptRecords != 0 {
			t.Fatalf("reopen: Stats() = %+v; want the damage cut for good", st)
		}
		want := []string{"new"}
		if seen["new"] {
			want = nil
		}
		if got := ids(s.Pending(10)); !slices.Equal(got, want) {
			t.Fatalf("reopen: Pending() = %v; want %v, appended after Open", got, want)
		}
	})
}

// FuzzScan runs the segment reader alone, in memory, so that fuzzing goes
// deeper than through FuzzOpen's files: it must not panic, and what it
// calls intact must be whole, consecutive, checksummed frames.
func FuzzScan(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, "r0", []byte("payload")), "r1", nil))
	f.Fuzz(func(t *testing.T, seg []byte) {
		var next int64
		end, damage, err := scan(bytes.NewReader(seg), int64(len(seg)), func(fr frameInfo) {
			if fr.off != next || fr.off+fr.size > int64(len(seg)) {
				t.Fatalf("frame at %d of %d bytes after %d, in %d bytes", fr.off, fr.size, next, len(seg))
			}
			id, _, err := decodeFrame(seg[fr.off : fr.off+fr.size])
			if err != nil || id != fr.id {
				t.Fatalf("frame at %d: decodeFrame() = %q, %v; scan saw %q", fr.off, id, err, fr.id)
			}
			next = fr.off + fr.size
		})
		if err != nil || end != next || (damage == "") != (end == int64(len(seg))) {
			t.Fatalf("scan() = %d, %q, %v; frames end at %d of %d", end, damage, err, next, len(seg))
		}
	})
}
