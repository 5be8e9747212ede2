package web

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestBrowserSeeded runs the pages over the real query layer and a real
// PostgreSQL seeded with a world that produces every class.
func TestBrowserSeeded(t *testing.T) {
	st := storetest.New(t)
	datasettest.NewWorld().Seed(t, st)
	clock := func() time.Time { return datasettest.Now }
	d, err := dataset.New(st.Pool, dataset.Config{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(d, Options{Now: clock, Logger: slog.New(slog.DiscardHandler), SoftwareVersion: "test"}))
	defer srv.Close()
	var want []wantASN
	for _, a := range datasettest.ASNs {
		for fam, class := range a.Class {
			want = append(want, wantASN{ASN: a.ASN, Family: fam, Class: class})
		}
	}
	checkPages(t, srv.URL, "seeded", want)
}
