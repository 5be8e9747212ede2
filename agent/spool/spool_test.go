package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// open opens the spool in dir and closes it when the test ends.
func open(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes s and opens its directory again.
func reopen(t testing.TB, s *Spool, opts Options) *Spool {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return open(t, s.dir, opts)
}

// payloadOf is the payload the tests spool under id: its length varies
// with the id so that frames straddle segment and page boundaries.
func payloadOf(id string) []byte {
	n, _ := strconv.Atoi(id[1:])
	return bytes.Repeat([]byte(id+"."), 1+n%23)
}

func appendN(t testing.TB, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		id := "r" + strconv.Itoa(i)
		if err := s.Append(id, payloadOf(id)); err != nil {
			t.Fatalf("Append(%s) = %v", id, err)
		}
	}
}

func ids(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func idRange(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "r"+strconv.Itoa(i))
	}
	return out
}

// checkPending checks that the pending records are want, in order, with
// their payloads intact.
func checkPending(t testing.TB, s *Spool, want []string) {
	t.Helper()
	got := s.Pending(len(want) + 10)
	if !slices.Equal(ids(got), want) {
		t.Fatalf("Pending() ids = %v; want %v", ids(got), want)
	}
	for _, r := range got {
		if !bytes.Equal(r.Payload, payloadOf(r.ID)) {
			t.Fatalf("Pending() payload of %s = %q; want %q", r.ID, r.Payload, payloadOf(r.ID))
		}
	}
	if s.Len() != len(want) {
		t.Fatalf("Len() = %d; want %d", s.Len(), len(want))
	}
}

// files lists the spool's segments and ack logs in dir.
func files(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, _, ok := parseFileName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

func segPath(dir string, seq uint64) string { return filepath.Join(dir, fileName(seq, segExt)) }

func TestPendingOrder(t *testing.T) {
	opts := Options{SegmentBytes: 200}
	s := open(t, t.TempDir(), opts)
	appendN(t, s, 0, 20)
	if st := s.Stats(); st.Segments < 3 {
		t.Fatalf("Stats().Segments = %d; want several with SegmentBytes 200", st.Segments)
	}
	checkPending(t, s, idRange(0, 20))
	if got := ids(s.Pending(3)); !slices.Equal(got, idRange(0, 3)) {
		t.Errorf("Pending(3) = %v; want %v", got, idRange(0, 3))
	}
	// Unacknowledged records are handed out again.
	if got := ids(s.Pending(3)); !slices.Equal(got, idRange(0, 3)) {
		t.Errorf("second Pending(3) = %v; want %v", got, idRange(0, 3))
	}
	if got := s.Pending(0); got != nil {
		t.Errorf("Pending(0) = %v; want nil", got)
	}
	s = reopen(t, s, opts)
	checkPending(t, s, idRange(0, 20))
	appendN(t, s, 20, 25)
	checkPending(t, s, idRange(0, 25))
}

func TestAppendBatch(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	var batch []Record
	for _, id := range idRange(0, 5) {
		batch = append(batch, Record{ID: id, Payload: payloadOf(id)})
	}
	if err := s.AppendBatch(batch); err != nil {
		t.Fatalf("AppendBatch() = %v", err)
	}
	if err := s.AppendBatch(nil); err != nil {
		t.Fatalf("AppendBatch(nil) = %v", err)
	}
	checkPending(t, s, idRange(0, 5))
}

func TestAppendRefuses(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	appendN(t, s, 0, 1)
	tests := []struct {
		name string
		recs []Record
	}{
		{"empty id", []Record{{ID: ""}}},
		{"long id", []Record{{ID: string(make([]byte, maxIDLen+1))}}},
		{"huge payload", []Record{{ID: "big", Payload: make([]byte, maxBodyLen)}}},
		{"pending id", []Record{{ID: "r0"}}},
		{"id twice in a batch", []Record{{ID: "a"}, {ID: "a"}}},
		{"one bad in a batch", []Record{{ID: "b"}, {ID: ""}}},
	}
	for _, tt := range tests {
		if err := s.AppendBatch(tt.recs); err == nil || errors.Is(err, ErrFull) {
			t.Errorf("AppendBatch(%s) = %v; want a refusal", tt.name, err)
		}
	}
	checkPending(t, s, []string{"r0"})
	// Once acknowledged, an id may come back.
	if err := s.Ack("r0"); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 1)
	checkPending(t, s, []string{"r0"})
}

func TestAckPersists(t *testing.T) {
	opts := Options{SegmentBytes: 300}
	s := open(t, t.TempDir(), opts)
	appendN(t, s, 0, 10)
	if err := s.Ack("r1", "r3", "r5", "r5", "unknown"); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	want := []string{"r0", "r2", "r4", "r6", "r7", "r8", "r9"}
	checkPending(t, s, want)
	if err := s.Ack("r3"); err != nil { // repeated by the collector
		t.Fatalf("Ack(r3) again = %v", err)
	}
	s = reopen(t, s, opts)
	checkPending(t, s, want)
	if err := s.Ack("r0", "r9"); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, opts)
	checkPending(t, s, want[1:len(want)-1])
}

func TestSegmentDeletedWhenAcked(t *testing.T) {
	opts := Options{SegmentBytes: 100}
	dir := t.TempDir()
	s := open(t, dir, opts)
	appendN(t, s, 0, 12)
	before := s.Stats()
	segs := s.segs // only this goroutine touches s
	first, second := segs[0], segs[1]
	var inFirst []string
	for _, r := range first.recs {
		inFirst = append(inFirst, r.id)
	}
	if err := s.Ack(inFirst[:len(inFirst)-1]...); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(segPath(dir, first.seq)); err != nil {
		t.Fatalf("segment deleted before all its records were acknowledged: %v", err)
	}
	if err := s.Ack(inFirst[len(inFirst)-1]); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{segExt, ackExt} {
		if _, err := os.Stat(filepath.Join(dir, fileName(first.seq, ext))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after acknowledging all its records, %s%s: Stat() = %v; want not exist", fileName(first.seq, ""), ext, err)
		}
	}
	after := s.Stats()
	if after.Segments != before.Segments-1 || after.Bytes != before.Bytes-first.size {
		t.Errorf("Stats() = %+v after deleting a segment of %d bytes from %+v", after, first.size, before)
	}
	if _, err := os.Stat(segPath(dir, second.seq)); err != nil {
		t.Errorf("next segment: %v", err)
	}

	// The segment being written goes once it is no longer written.
	if err := s.Ack(idRange(0, 12)...); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Segments; got != 1 {
		t.Errorf("all acknowledged: Stats().Segments = %d; want 1, the one being written", got)
	}
	s = reopen(t, s, opts)
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("all acknowledged and reopened: files %v; want none", got)
	}
	if st := s.Stats(); st != (Stats{Lost: Loss{SpoolID: st.Lost.SpoolID}}) {
		t.Errorf("Stats() = %+v; want zero", st)
	}
	appendN(t, s, 12, 14)
	checkPending(t, s, idRange(12, 14))
}

func TestFull(t *testing.T) {
	frames := func(ids []string) (n int64) {
		for _, id := range ids {
			n += frameLen(id, payloadOf(id))
		}
		return n
	}
	// Segments of two records: {r10, r11}, {r12, r13}, {r14}.
	old := idRange(10, 15)
	opts := Options{MaxBytes: frames(old) + 10, SegmentBytes: frames(idRange(13, 15))}
	s := open(t, t.TempDir(), opts)
	appendN(t, s, 10, 15)
	if err := s.Append("r15", payloadOf("r15")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append() on a full spool = %v; want ErrFull", err)
	}
	if err := s.AppendBatch([]Record{{ID: "a", Payload: []byte("x")}, {ID: "b"}}); !errors.Is(err, ErrFull) {
		t.Fatalf("AppendBatch() on a full spool = %v; want ErrFull", err)
	}
	if st := s.Stats(); st.DroppedFull != 3 || st.Pending != 5 || st.Bytes != frames(old) || st.Segments != 3 {
		t.Fatalf("Stats() = %+v; want 3 dropped, the 5 old records kept in 3 segments, %d bytes", st, frames(old))
	}
	checkPending(t, s, old)

	// Room comes back a whole segment at a time.
	if err := s.Ack("r10"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append("r15", payloadOf("r15")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append() with half a segment acknowledged = %v; want ErrFull", err)
	}
	if err := s.Ack("r11"); err != nil {
		t.Fatal(err)
	}
	// A batch keeps the longest prefix that fits.
	room := opts.MaxBytes - s.Stats().Bytes
	batch := idRange(30, 40)
	fit := 0
	for used := int64(0); used+frameLen(batch[fit], payloadOf(batch[fit])) <= room; fit++ {
		used += frameLen(batch[fit], payloadOf(batch[fit]))
	}
	if fit == 0 || fit == len(batch) {
		t.Fatalf("test setup: %d of %d records fit", fit, len(batch))
	}
	var recs []Record
	for _, id := range batch {
		recs = append(recs, Record{ID: id, Payload: payloadOf(id)})
	}
	if err := s.AppendBatch(recs); !errors.Is(err, ErrFull) {
		t.Fatalf("AppendBatch() of %d with room for %d = %v; want ErrFull", len(batch), fit, err)
	}
	checkPending(t, s, append(idRange(12, 15), batch[:fit]...))
	if got, want := s.Stats().DroppedFull, int64(4+len(batch)-fit); got != want {
		t.Errorf("Stats().DroppedFull = %d; want %d", got, want)
	}
	// No longer full.
	if err := s.Ack(idRange(0, 40)...); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, opts)
	appendN(t, s, 10, 15)
	checkPending(t, s, old)
}

func TestCorruptMiddleFrame(t *testing.T) {
	dir := t.TempDir()
	opts := Options{}
	s := open(t, dir, opts)
	appendN(t, s, 0, 3)
	s = reopen(t, s, opts) // the next records go to segment 2
	appendN(t, s, 3, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	end0 := frameLen("r0", payloadOf("r0"))
	b[end0+frameHeaderLen+idLenLen+3] ^= 0x40 // in the payload of r1
	if err := os.WriteFile(segPath(dir, 1), b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, opts)
	checkPending(t, s, []string{"r0", "r3", "r4"})
	if st := s.Stats(); st.CorruptRecords != 1 {
		t.Errorf("Stats().CorruptRecords = %d; want 1", st.CorruptRecords)
	}
	if fi, err := os.Stat(segPath(dir, 1)); err != nil || fi.Size() != end0 {
		t.Errorf("damaged segment: Stat() = %v, %v; want cut to %d bytes", fi.Size(), err, end0)
	}
	s = reopen(t, s, opts)
	checkPending(t, s, []string{"r0", "r3", "r4"})
	if st := s.Stats(); st.CorruptRecords != 0 {
		t.Errorf("reopened: Stats().CorruptRecords = %d; want 0, the damage was cut", st.CorruptRecords)
	}
}

// TestTruncatedEveryOffset cuts a segment at every byte, as a crash or a
// full disk may, and checks that Open keeps exactly the whole frames.
func TestTruncatedEveryOffset(t *testing.T) {
	src := t.TempDir()
	s := open(t, src, Options{})
	appendN(t, s, 0, 4)
	if err := s.Ack("r1"); err != nil { // cuts must not confuse the ack log either
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg, err := os.ReadFile(segPath(src, 1))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := os.ReadFile(filepath.Join(src, fileName(1, ackExt)))
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64 // where each frame ends
	var end int64
	for _, id := range idRange(0, 4) {
		end += frameLen(id, payloadOf(id))
		ends = append(ends, end)
	}

	for cut := 0; cut <= len(seg); cut++ {
		dir := t.TempDir()
		if err := os.WriteFile(segPath(dir, 1), seg[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fileName(1, ackExt)), ack, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("cut at %d: Open() = %v", cut, err)
		}
		var want []string
		whole := 0
		for i, e := range ends {
			if e <= int64(cut) {
				whole = int(e)
				if i != 1 {
					want = append(want, "r"+strconv.Itoa(i))
				}
			}
		}
		checkPending(t, s, want)
		wantCorrupt := int64(0)
		if whole != cut {
			wantCorrupt = 1
		}
		if got := s.Stats().CorruptRecords; got != wantCorrupt {
			t.Errorf("cut at %d: Stats().CorruptRecords = %d; want %d", cut, got, wantCorrupt)
		}
		// The cut tail is gone for good, and the spool carries on.
		appendN(t, s, 10, 11)
		s.Close()
		s = open(t, dir, Options{})
		checkPending(t, s, append(want, "r10"))
		if got := s.Stats().CorruptRecords; got != 0 {
			t.Errorf("cut at %d, reopened: Stats().CorruptRecords = %d; want 0", cut, got)
		}
		s.Close()
	}
}

func TestDamagedAckLog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{}
	s := open(t, dir, opts)
	appendN(t, s, 0, 4)
	if err := s.Ack("r0", "r1", "r2"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, fileName(1, ackExt))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[ackEntryLen+2] ^= 1                    // r1's entry fails its checksum
	b = append(b, appendAck(nil, 99)[:5]...) // a torn entry
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, opts)
	// At least once: a lost acknowledgement means delivering again.
	checkPending(t, s, []string{"r1", "r3"})
	if err := s.Ack("r3"); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, opts)
	checkPending(t, s, []string{"r1"})
}

func TestOrphanAckLog(t *testing.T) {
	dir := t.TempDir()
	// As left by a crash between deleting a segment and its ack log.
	orphan := filepath.Join(dir, fileName(5, ackExt))
	if err := os.WriteFile(orphan, appendAck(nil, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan ack log: Stat() = %v; want deleted", err)
	}
	appendN(t, s, 0, 1)
	checkPending(t, s, []string{"r0"})
	if got := files(t, dir); !slices.Equal(got, []string{fileName(6, segExt)}) {
		t.Errorf("files = %v; want a segment numbered after the orphan", got)
	}
}

func TestDamageFoundOnRead(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 3)
	f, err := os.OpenFile(segPath(dir, 1), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := frameLen("r0", payloadOf("r0")) + frameHeaderLen + idLenLen + 2
	if _, err := f.WriteAt([]byte{0xff}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	checkPending(t, s, []string{"r0", "r2"})
	if got := s.Stats().CorruptRecords; got != 1 {
		t.Errorf("Stats().CorruptRecords = %d; want 1", got)
	}
}

func TestForeignFilesIgnored(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"notes.txt", "1.seg", "00000000000x.seg", "-00000000001.seg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dir, Options{})
	appendN(t, s, 0, 1)
	checkPending(t, s, []string{"r0"})
}

func TestLocked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the directory lock is Linux-only")
	}
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open() of a directory in use succeeded")
	}
	s.Close()
	open(t, dir, Options{})
}

func TestClosed(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	appendN(t, s, 0, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := s.Append("r1", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Append() = %v; want ErrClosed", err)
	}
	if err := s.Ack("r0"); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack() = %v; want ErrClosed", err)
	}
	if got := s.Pending(1); got != nil {
		t.Errorf("Pending() = %v; want nil", got)
	}
}

// TestWriterAndReader runs the prober's and the uploader's sides at once,
// for the race detector, and checks each record arrives once and in order.
func TestWriterAndReader(t *testing.T) {
	const n = 300
	s := open(t, t.TempDir(), Options{SegmentBytes: 1 << 10})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < n; i += 3 {
			var batch []Record
			for _, id := range idRange(i, i+3) {
				batch = append(batch, Record{ID: id, Payload: payloadOf(id)})
			}
			if err := s.AppendBatch(batch); err != nil {
				t.Errorf("AppendBatch() = %v", err)
				return
			}
		}
	})
	var got []string
	for len(got) < n && !t.Failed() {
		recs := s.Pending(17)
		for _, r := range recs {
			if !bytes.Equal(r.Payload, payloadOf(r.ID)) {
				t.Fatalf("payload of %s = %q", r.ID, r.Payload)
			}
		}
		if err := s.Ack(ids(recs)...); err != nil {
			t.Fatal(err)
		}
		_ = s.Stats()
		got = append(got, ids(recs)...)
	}
	wg.Wait()
	if !slices.Equal(got, idRange(0, n)) {
		t.Errorf("delivered %d records %v...; want r0..r%d once each, in order", len(got), got[:min(len(got), 10)], n-1)
	}
	if st := s.Stats(); st.Pending != 0 || st.Segments > 1 {
		t.Errorf("Stats() = %+v; want nothing pending, only the segment being written", st)
	}
}

func ExampleSpool() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	s, err := Open(dir, Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// The prober's side.
	_ = s.Append("0190e0a4-result-1", []byte("serialized ProbeResult"))
	_ = s.Append("0190e0a4-result-2", []byte("another one"))

	// The uploader's side: send, then acknowledge what the collector took.
	for _, r := range s.Pending(100) {
		fmt.Printf("send %s (%d bytes)\n", r.ID, len(r.Payload))
	}
	_ = s.Ack("0190e0a4-result-1")
	fmt.Println(s.Len(), "pending")
	// Output:
	// send 0190e0a4-result-1 (22 bytes)
	// send 0190e0a4-result-2 (11 bytes)
	// 1 pending
}

// TestSmallSpoolKeepsWorking is the regression test of a spool smaller than
// a segment: acknowledged records kept counting against MaxBytes because
// the segment being written never rolled, so that once MaxBytes of results
// had been written every round was dropped with nothing pending (20,000
// bytes: 347 of 378 results dropped). While the collector acknowledges each
// round, no round may be dropped, whatever the size, and the segment files
// must stay within MaxBytes.
func TestSmallSpoolKeepsWorking(t *testing.T) {
	// A round's results as the daemon spools them: UUIDv7 ids and payloads
	// of the size of a serialized ProbeResult.
	round := func(n, results int) []Record {
		recs := make([]Record, results)
		for i := range recs {
			recs[i] = Record{ID: fmt.Sprintf("0190e0a4-7c2e-7000-8000-%06d%06d", n, i), Payload: bytes.Repeat([]byte{byte(i)}, 600)}
		}
		return recs
	}
	for _, tc := range []struct {
		name           string
		maxBytes       int64
		rounds, perRnd int
	}{
		{"20,000 bytes, rounds of 6 (the issue's reproduction)", 20_000, 63, 6},
		{"1 MiB, rounds of 18 (the router guide's size)", 1 << 20, 300, 18},
		{"one round and a byte", 6*(minFrameLen+36+600) + 1, 40, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{MaxBytes: tc.maxBytes}
			s := open(t, t.TempDir(), opts)
			for n := range tc.rounds {
				recs := round(n, tc.perRnd)
				if err := s.AppendBatch(recs); err != nil {
					t.Fatalf("round %d: AppendBatch() = %v with %d pending; want it spooled", n, err, s.Len())
				}
				if st := s.Stats(); st.Bytes > tc.maxBytes {
					t.Fatalf("round %d: Stats().Bytes = %d; want at most MaxBytes %d", n, st.Bytes, tc.maxBytes)
				}
				if err := s.Ack(ids(s.Pending(tc.perRnd))...); err != nil {
					t.Fatal(err)
				}
				if n == tc.rounds/2 { // a restart changes nothing
					s = reopen(t, s, opts)
				}
			}
			if st := s.Stats(); st.DroppedFull != 0 || st.Pending != 0 {
				t.Errorf("Stats() = %+v after %d acknowledged rounds; want nothing dropped or pending", st, tc.rounds)
			}
		})
	}
}
