package store_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func results(n int, at time.Time) []store.Result {
	rs := make([]store.Result, n)
	for i := range rs {
		t := at.Add(time.Duration(i) * time.Hour) // spans partitions
		rs[i] = store.Result{ID: uuidv7.New(t), MeasuredAt: t.Truncate(time.Millisecond), AgentID: "agent-1", RefMTA: "refmta-1",
			Port: 25, Family: 4, Verdict: 2, Failure: "timeout", Egress: netip.MustParseAddr("198.51.100.7"),
			EgressSource: store.EgressControl, Prefix: netip.MustParsePrefix("198.51.100.0/24"), ASN: 64500}
	}
	return rs
}

func count(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(), "SELECT count(*) FROM results").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReplayStoredOnce(t *testing.T) {
	s := storetest.New(t)
	batch := results(50, time.Now().Add(-30*time.Hour))
	for i := 0; i < 3; i++ {
		n, err := s.InsertResults(context.Background(), batch)
		if err != nil {
			t.Fatalf("replay %d: %v", i, err)
		}
		if want := map[bool]int64{true: 50, false: 0}[i == 0]; n != want {
			t.Errorf("replay %d inserted %d; want %d", i, n, want)
		}
	}
	if got := count(t, s); got != 50 {
		t.Errorf("rows after 3 replays = %d; want 50", got)
	}
	// Partially overlapping batch: only the new half is inserted.
	more := append(batch[25:], results(10, time.Now().Add(-2*time.Hour))...)
	if n, err := s.InsertResults(context.Background(), more); err != nil || n != 10 {
		t.Errorf("overlapping batch inserted %d, %v; want 10", n, err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	url := storetest.URL(t)
	files, _ := filepath.Glob("migrations/*.sql")
	for i := 0; i < 2; i++ {
		s, err := store.Open(context.Background(), url, nil)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var v int
		s.Pool.QueryRow(context.Background(), "SELECT max(version) FROM schema_migrations").Scan(&v)
		s.Close()
		if v != len(files) {
			t.Errorf("schema version after open %d = %d; want %d", i, v, len(files))
		}
	}
}

func TestSightingsCorroborateOpen(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rs := results(3, at)
	for i := range rs {
		rs[i].Verdict = 1 // OPEN
		rs[i].MeasuredAt = at
		rs[i].ID = uuidv7.New(at)
		rs[i].Nonce = []byte{byte(i), 1, 2, 3}
	}
	rs[2].AgentID = "liar"
	if _, err := s.InsertResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	var ss []store.Sighting
	for i := 0; i < 2; i++ {
		ss = append(ss, store.Sighting{ID: uuidv7.New(at), SeenAt: at, RefMTA: "refmta-1", Nonce: rs[i].Nonce,
			Source: netip.MustParseAddr("198.51.100.7"), Port: 25, TLS: true})
	}
	for i := 0; i < 2; i++ { // replayed: stored once
		if _, err := s.InsertSightings(ctx, ss); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	s.Pool.QueryRow(ctx, "SELECT count(*) FROM sightings").Scan(&n)
	if n != 2 {
		t.Errorf("sightings after a replay = %d; want 2", n)
	}
	flagged, err := s.Uncorroborated(ctx, at.Add(-time.Minute), at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(flagged) != 1 || len(flagged["liar"]) != 1 || flagged["liar"][0] != rs[2].ID {
		t.Errorf("Uncorroborated = %v; want only liar's %s", flagged, rs[2].ID)
	}
}

func TestVerdictCounts(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rs := results(4, at)
	for i := range rs {
		rs[i].MeasuredAt, rs[i].ID = at, uuidv7.New(at)
	}
	rs[3].Verdict, rs[3].AgentID = 1, "agent-2"
	if _, err := s.InsertResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got, err := s.VerdictCounts(ctx, at.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.VerdictCount{{ASN: 64500, Family: 4, Port: 25, Verdict: 1, Results: 1, Agents: 1},
		{ASN: 64500, Family: 4, Port: 25, Verdict: 2, Results: 3, Agents: 1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("VerdictCounts = %+v; want %+v", got, want)
	}
}

func TestUpsertASNames(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	if err := s.UpsertASNames(ctx, []store.ASHolder{{64500, "OLD-NAME", "JP"}, {64501, "OTHER", "DE"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertASNames(ctx, []store.ASHolder{{64500, "NEW-NAME", "JP"}}); err != nil {
		t.Fatal(err)
	}
	var name string
	var n int
	s.Pool.QueryRow(ctx, "SELECT (SELECT name FROM as_names WHERE asn = 64500), count(*) FROM as_names").Scan(&name, &n)
	if name != "NEW-NAME" || n != 2 {
		t.Errorf("as_names: AS64500 %q, %d rows; want NEW-NAME and 2", name, n)
	}
}

// TestCopyRowsEncodesUUIDs: CopyRows hands pgx result and submission ids
// as UUID values, which it encodes in binary straight away; a string costs
// pgx a refused binary encoding (an error value built per row) before it
// parses it. An id that is no UUID stays the caller's text, for
// PostgreSQL to refuse.
func TestCopyRowsEncodesUUIDs(t *testing.T) {
	id, sub := "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b", "0190a3c4-5b6d-7e8f-9a0b-000000000001"
	cols, rows := store.CopyRows([]store.Result{{ID: id, SubmissionID: sub}, {ID: "not-a-uuid"}})
	at := func(name string) int { return slices.Index(cols, name) }
	for _, c := range []struct {
		row  int
		col  string
		want any
	}{
		{0, "result_id", pgtype.UUID{Bytes: [16]byte{0x01, 0x90, 0xa3, 0xc4, 0x5b, 0x6d, 0x7e, 0x8f, 0x9a, 0x0b, 0x1c, 0x2d, 0x3e, 0x4f, 0x5a, 0x6b}, Valid: true}},
		{0, "submission_id", pgtype.UUID{Bytes: [16]byte{0x01, 0x90, 0xa3, 0xc4, 0x5b, 0x6d, 0x7e, 0x8f, 0x9a, 0x0b, 15: 1}, Valid: true}},
		{1, "result_id", "not-a-uuid"},
		{1, "submission_id", nil},
	} {
		if got := rows[c.row][at(c.col)]; got != c.want {
			t.Errorf("row %d, %s: %#v; want %#v", c.row, c.col, got, c.want)
		}
	}
}
