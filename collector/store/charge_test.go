package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
)

// probe is one result of a round in the charge table: the reference MTA,
// its network (an ASN, else a prefix) and the verdict.
type probe struct {
	refmta  string
	asn     uint32
	prefix  string
	verdict uint8
}

// Verdict numbers (op25b.v1.Verdict).
const (
	open, timeout, reset, intercepted, tampered, inconc = 1, 2, 3, 5, 6, 7
)

func roundOf(at time.Time, round string, ps []probe) []store.Result {
	var rs []store.Result
	for i, p := range ps {
		t := at.Add(time.Duration(i) * time.Millisecond)
		r := store.Result{ID: uuidv7.New(t), MeasuredAt: t.Truncate(time.Millisecond), AgentID: "agent-1", RefMTA: p.refmta,
			Port: 25, Family: 4, Verdict: p.verdict, RoundID: round, Egress: netip.MustParseAddr("198.51.100.7"),
			EgressSource: store.EgressControl, Prefix: netip.MustParsePrefix("198.51.100.0/24"), ASN: 64500, RefMTAASN: p.asn}
		if p.prefix != "" {
			r.RefMTAPrefix = netip.MustParsePrefix(p.prefix)
		}
		rs = append(rs, r)
	}
	return rs
}

// charged returns the reference MTAs of the charged results, sorted.
func charged(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT refmta_id FROM results WHERE refmta_charged ORDER BY refmta_id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChargedToReferenceMTA(t *testing.T) {
	for _, tc := range []struct {
		name   string
		probes []probe
		want   []string
	}{
		{"agreeing networks", []probe{{"a", 1, "", timeout}, {"b", 2, "", reset}, {"c", 3, "", timeout}}, nil},
		{"one network only", []probe{{"a", 1, "", open}, {"b", 1, "", timeout}}, nil},
		{"majority open", []probe{{"a", 1, "", open}, {"b", 2, "", timeout}, {"c", 3, "", open}}, []string{"b"}},
		{"majority blocked", []probe{{"a", 1, "", reset}, {"b", 2, "", timeout}, {"c", 3, "", open}}, []string{"c"}},
		{"two networks, OPEN stands", []probe{{"a", 1, "", open}, {"b", 2, "", timeout}}, []string{"b"}},
		{"three groups, OPEN stands", []probe{{"a", 1, "", open}, {"b", 2, "", timeout}, {"c", 3, "", intercepted}}, []string{"b", "c"}},
		{"no majority, no OPEN", []probe{{"a", 1, "", intercepted}, {"b", 2, "", timeout}}, []string{"a", "b"}},
		{"tie of two against two", []probe{{"a", 1, "", open}, {"b", 2, "", reset}, {"c", 3, "", open}, {"d", 4, "", timeout}}, []string{"b", "d"}},
		{"majority over OPEN", []probe{{"a", 1, "", open}, {"b", 2, "", reset}, {"c", 3, "", timeout}}, []string{"a"}},
		{"inconclusive takes no side", []probe{{"a", 1, "", open}, {"b", 2, "", inconc}}, nil},
		{"inconclusive never charged", []probe{{"a", 1, "", intercepted}, {"b", 2, "", timeout}, {"c", 3, "", inconc}}, []string{"a", "b"}},
		{"intercepted and tampered are one group", []probe{{"a", 1, "", intercepted}, {"b", 2, "", tampered}}, nil},
		{"prefix when no ASN", []probe{{"a", 0, "192.0.2.0/24", open}, {"b", 0, "203.0.113.0/24", timeout}, {"c", 0, "198.18.0.0/24", open}}, []string{"b"}},
		{"same network, split inside", []probe{{"a", 1, "", open}, {"b", 1, "", timeout}, {"c", 2, "", open}}, []string{"b"}},
		{"unknown network not compared", []probe{{"a", 1, "", open}, {"b", 0, "", timeout}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storetest.New(t)
			ctx := context.Background()
			if _, err := s.InsertResults(ctx, roundOf(time.Now().Add(-time.Hour), "round-1", tc.probes)); err != nil {
				t.Fatal(err)
			}
			if got := charged(t, s.Pool); !slices.Equal(got, tc.want) {
				t.Errorf("charged at ingest: %q; want %q", got, tc.want)
			}
			// Rebuild recomputes the marker from the stored rows alone.
			if _, err := s.Pool.Exec(ctx, "UPDATE results SET refmta_charged = NOT refmta_charged"); err != nil {
				t.Fatal(err)
			}
			err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
				_, err := store.RebuildTallies(ctx, tx)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := charged(t, s.Pool); !slices.Equal(got, tc.want) {
				t.Errorf("charged after rebuild: %q; want %q", got, tc.want)
			}
		})
	}
}

// TestChargedWithinOneBatch: results of one round split across uploads are
// not compared, at ingest or on rebuild, and rounds, ports and families are
// compared apart.
func TestChargedWithinOneBatch(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	split := roundOf(at, "round-split", []probe{{"a", 1, "", open}, {"b", 2, "", timeout}})
	for _, r := range split { // two batches, as an older agent uploads
		if _, err := s.InsertResults(ctx, []store.Result{r}); err != nil {
			t.Fatal(err)
		}
	}
	var apart []store.Result
	for i, r := range roundOf(at.Add(time.Minute), "round-x", []probe{{"a", 1, "", open}, {"b", 2, "", timeout}, {"c", 3, "", timeout}, {"d", 4, "", open}}) {
		switch i {
		case 1:
			r.RoundID = "round-y"
		case 2:
			r.Port = 587
		case 3:
			r.Family, r.Prefix = 6, netip.MustParsePrefix("2001:db8::/48")
		}
		apart = append(apart, r)
	}
	if _, err := s.InsertResults(ctx, apart); err != nil {
		t.Fatal(err)
	}
	if got := charged(t, s.Pool); len(got) != 0 {
		t.Errorf("charged %q; want none (no two networks share a batch, round, port and family)", got)
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		_, err := store.RebuildTallies(ctx, tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := charged(t, s.Pool); len(got) != 0 {
		t.Errorf("charged after rebuild %q; want none", got)
	}
}

// TestChargedTallies: charged results leave the ASN's verdict counts for
// n_charged, count per reference MTA, and keep their evidence out.
func TestChargedTallies(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	rs := roundOf(time.Now().Add(-time.Hour), "round-1", []probe{{"a", 1, "", open}, {"b", 2, "", intercepted}, {"c", 3, "", open}})
	rs[1].PublicEvidence = "banner: 220 not ours"
	if _, err := s.InsertResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	var nOpen, nIntercepted, nCharged, evidence int
	if err := s.Pool.QueryRow(ctx, `SELECT sum(n_open), sum(n_intercepted), sum(n_charged), (SELECT count(*) FROM agg_evidence)
		FROM agg_agent_day`).Scan(&nOpen, &nIntercepted, &nCharged, &evidence); err != nil {
		t.Fatal(err)
	}
	if nOpen != 2 || nIntercepted != 0 || nCharged != 1 || evidence != 0 {
		t.Errorf("ASN tallies: open %d, intercepted %d, charged %d, evidence rows %d; want 2, 0, 1, 0", nOpen, nIntercepted, nCharged, evidence)
	}
	got := map[string]string{}
	rows, _ := s.Pool.Query(ctx, "SELECT refmta_id, n_open, n_intercepted, n_charged FROM agg_refmta_day")
	var id string
	var o, i, c int
	pgx.ForEachRow(rows, []any{&id, &o, &i, &c}, func() error { got[id] = fmt.Sprint(o, i, c); return nil })
	if want := map[string]string{"a": "1 0 0", "b": "0 1 1", "c": "1 0 0"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("per reference MTA (open intercepted charged): %v; want %v", got, want)
	}
}

// TestChargedReplayKeepsMarks: a batch that repeats stored results of a
// round with new ones compares only the new ones, as rebuild does.
func TestChargedReplayKeepsMarks(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	rs := roundOf(time.Now().Add(-time.Hour), "round-1", []probe{{"a", 1, "", timeout}, {"b", 2, "", timeout}, {"c", 3, "", open}, {"d", 4, "", inconc}})
	if _, err := s.InsertResults(ctx, rs[:2]); err != nil { // a split round: a and b agree
		t.Fatal(err)
	}
	if _, err := s.InsertResults(ctx, rs); err != nil { // the rest arrives with a replay of the first part
		t.Fatal(err)
	}
	// c was stored apart from a and b: compared with them, the blocked
	// majority would have charged it.
	var want []string
	if got := charged(t, s.Pool); !slices.Equal(got, want) {
		t.Errorf("charged at ingest: %q; want %q", got, want)
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		_, err := store.RebuildTallies(ctx, tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := charged(t, s.Pool); !slices.Equal(got, want) {
		t.Errorf("charged after rebuild: %q; want %q", got, want)
	}
}
