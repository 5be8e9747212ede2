package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
)

// TestNotifyInserted: the ingest transaction announces each result it
// inserts once, in payloads under PostgreSQL's limit, with the public
// columns only; a replay announces nothing, and nothing is announced
// unless asked.
func TestNotifyInserted(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payloads := make(chan string, 1000)
	ready := make(chan struct{})
	go s.Listen(ctx, []string{store.ResultsChannel}, func() { close(ready) }, func(_, p string) { payloads <- p })
	<-ready

	quiet := results(10, time.Now().Add(-2*time.Hour))
	if _, err := s.InsertResults(ctx, quiet); err != nil {
		t.Fatal(err)
	}
	s.NotifyResults(true)
	batch := results(500, time.Now().Add(-20*time.Hour))
	batch[0].Failure = "odd\tfailure\nwith breaks"
	for range 2 { // the second is a replay
		if _, err := s.InsertResults(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.InsertResults(ctx, results(1, time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}

	var got []store.PublicResult
	for len(got) < 501 {
		select {
		case p := <-payloads:
			if len(p) >= 8000 {
				t.Errorf("a payload of %d bytes", len(p))
			}
			for _, secret := range []string{"198.51.100.7", "agent-1"} {
				if strings.Contains(p, secret) {
					t.Errorf("a payload carries %q", secret)
				}
			}
			rs, err := store.ParseNotice(p)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rs...)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d results announced; want 501", len(got))
		}
	}
	select {
	case p := <-payloads:
		t.Errorf("more announced than stored: %q", p)
	case <-time.After(200 * time.Millisecond):
	}
	first := got[0]
	want := batch[0]
	if !first.MeasuredAt.Equal(want.MeasuredAt) || first.Prefix != want.Prefix || first.ASN != want.ASN || first.Port != want.Port ||
		first.Family != want.Family || first.Verdict != want.Verdict || first.RefMTA != want.RefMTA || first.Failure != "odd failure with breaks" {
		t.Errorf("announced %+v; stored %+v", first, want)
	}
}
