package dataset_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// eventLine shows an event compactly for comparisons.
func eventLine(e dataset.ChangeEvent) string {
	s := fmt.Sprintf("AS%d %s %s %s->%s", e.ASN, dataset.FamilyName(e.Family), e.Day.Format(time.DateOnly),
		dataset.ClassName(e.From), dataset.ClassName(e.To))
	if e.Retracted {
		s += " retracted"
	}
	return s
}

func eventLines(es []dataset.ChangeEvent) string {
	var out []string
	for _, e := range es {
		out = append(out, eventLine(e))
	}
	return strings.Join(out, "; ")
}

// TestChangeEvents: the refresh logs each policy change once, when it
// first finds it, and not again when it recomputes the same days, nor
// when a rebuild reaches the same state; when late results turn a change
// into another, it logs the old one retracted and the new one. Readers
// follow the log by id and filter it.
func TestChangeEvents(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	w := datasettest.NewWorld()
	w.Seed(t, s)
	now := datasettest.Now
	d, err := dataset.New(s.Pool, dataset.Config{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	all := func() []dataset.ChangeEvent {
		t.Helper()
		es, err := d.ChangeEvents(ctx, dataset.EventFilter{Newest: true})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	first := all()
	want := "AS64506 ipv4 " + datasettest.ChangeDay.Format(time.DateOnly) + " OPEN->OP25B"
	if got := eventLines(first); got != want {
		t.Fatalf("events after the first refresh: %s; want %s", got, want)
	}
	if e := first[0]; e.Name != "Switching ISP" || e.Country != "JP" || !e.SeenAt.Equal(now) {
		t.Errorf("event %+v: want the AS name, its country and the refresh's time %s", e, now)
	}

	// The same days recomputed (every day marked dirty again), and a
	// rebuild: nothing new.
	now = now.Add(time.Minute)
	if _, err := s.Pool.Exec(ctx, "INSERT INTO agg_dirty SELECT DISTINCT asn, family, day FROM agg_agent_day"); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Refresh(ctx); err != nil || st.Days == 0 {
		t.Fatalf("refresh of every day: %+v, %v", st, err)
	}
	if _, err := d.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := eventLines(all()); got != want {
		t.Fatalf("events after recomputing the same results: %s; want only %s", got, want)
	}

	// Late results: one more prefix of AS64506 open on every port all
	// week makes the change OPEN -> MIXED.
	late := &datasettest.World{}
	late.Farm(64506, 2, 1)
	if _, err := s.InsertResults(ctx, late.Results()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := d.ChangeEvents(ctx, dataset.EventFilter{After: first[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	day := datasettest.ChangeDay.Format(time.DateOnly)
	if got, want := eventLines(next), "AS64506 ipv4 "+day+" OPEN->MIXED; AS64506 ipv4 "+day+" OPEN->OP25B retracted"; got != want {
		t.Fatalf("events after late results: %s; want %s", got, want)
	}
	for _, e := range next {
		if !e.SeenAt.Equal(now) || e.ID <= first[0].ID {
			t.Errorf("event %s: id %d seen at %s; want after %d, at %s", eventLine(e), e.ID, e.SeenAt, first[0].ID, now)
		}
	}

	for _, c := range []struct {
		f    dataset.EventFilter
		want int
	}{
		{dataset.EventFilter{Country: "JP"}, 3},
		{dataset.EventFilter{Country: "US"}, 0},
		{dataset.EventFilter{ASN: 64506, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4}, 3},
		{dataset.EventFilter{ASN: 64500}, 0},
		{dataset.EventFilter{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV6}, 0},
		{dataset.EventFilter{Limit: 2}, 2},
		{dataset.EventFilter{After: first[0].ID, Country: "JP"}, 2},
	} {
		es, err := d.ChangeEvents(ctx, c.f)
		if err != nil || len(es) != c.want {
			t.Errorf("ChangeEvents(%+v) = %d events, %v; want %d", c.f, len(es), err, c.want)
		}
	}
	newest := all()
	if newest[0].ID < newest[len(newest)-1].ID {
		t.Errorf("ChangeEvents(Newest) lists %s; want the newest first", eventLines(newest))
	}
	// A follower from the start (After 0) reads them in the order logged.
	if es, err := d.ChangeEvents(ctx, dataset.EventFilter{}); err != nil || len(es) != 3 || es[0].ID != first[0].ID || es[0].ID > es[1].ID || es[1].ID > es[2].ID {
		t.Errorf("ChangeEvents(After 0) = %s, %v; want the 3 events oldest first", eventLines(es), err)
	}
}
