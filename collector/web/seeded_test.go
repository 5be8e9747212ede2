package web

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestBrowserSeeded runs the pages over the real query layer and a real
// PostgreSQL seeded with a world that produces every class.
func TestBrowserSeeded(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	srv := httptest.NewServer(New(d, Options{Now: datasettest.Clock, Logger: slog.New(slog.DiscardHandler), SoftwareVersion: "test"}))
	defer srv.Close()
	var want []wantASN
	for _, a := range datasettest.ASNs {
		for fam, class := range a.Class {
			want = append(want, wantASN{ASN: a.ASN, Family: fam, Class: class})
		}
	}
	checkPages(t, srv.URL, "seeded", want, "")
}
