package httpapi

import (
	"encoding/csv"
	"net/http"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The API over the real query layer and PostgreSQL, seeded with a world
// that produces every class: the whole pipeline from stored results to
// JSON, pinned by golden files.
func TestSeededGolden(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	h := New(d, Options{Now: datasettest.Clock})
	for name, target := range map[string]string{
		"seeded_info":       "/api/v1/info",
		"seeded_asns":       "/api/v1/asns",
		"seeded_asns_jp_7d": "/api/v1/asns?country=jp&window=7d&family=ipv4",
		"seeded_asn_relay":  "/api/v1/asns/AS64502?family=ipv4",
		"seeded_peers":      "/api/v1/asns/64501/peers",
		"seeded_changes":    "/api/v1/changes",
		"seeded_countries":  "/api/v1/countries?window=30d",
		"seeded_custom":     "/api/v1/asns?window=2026-03-04/2026-03-07&country=JP",
		"seeded_not_found":  "/api/v1/asns/65000",
	} {
		w := get(h, target)
		if want := http.StatusOK; name != "seeded_not_found" && w.Code != want {
			t.Errorf("GET %s: %d %s", target, w.Code, w.Body)
		}
		golden(t, name, w.Body.Bytes())
	}
	w := get(h, "/api/v1/export?start=2026-03-04&end=2026-03-11&format=csv")
	rows, err := csv.NewReader(w.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rows)-1, len(datasettest.NewWorld().Results()); got != want {
		t.Errorf("CSV export of the seeded week: %d rows; want %d", got, want)
	}
	for _, r := range rows[1:] {
		if strings.HasSuffix(r[4], ".10") || !strings.Contains(r[4], "/") {
			t.Fatalf("export row carries %q as its prefix; want a /24 or /48", r[4])
		}
	}
}

// TestBoundsOverHTTP: the documented bounds are enforced with errors that
// name them (issue 10: page_size=1000000000 was accepted, and
// window=9999999d answered "the end must come after the start").
func TestBoundsOverHTTP(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	h := New(d, Options{Now: datasettest.Clock})
	for target, says := range map[string]string{
		"/api/v1/asns?page_size=1000000000":  "page_size 1000000000: at most 5000",
		"/api/v1/changes?page_size=5001":     "page_size 5001: at most 5000",
		"/api/v1/asns?page_size=99999999999": "page_size",
		"/api/v1/asns?window=9999999d":       "at most 36600 days",
		"/api/v1/countries?window=400d":      "400 days is longer than the 366 this server allows",
	} {
		w := get(h, target)
		b := checkError(t, target, w, 400, "INVALID_ARGUMENT")
		if !strings.Contains(b.Error.Message, says) {
			t.Errorf("GET %s: %q; want it to say %q", target, b.Error.Message, says)
		}
	}
	if w := get(h, "/api/v1/asns?page_size=5000"); w.Code != 200 {
		t.Errorf("page_size=5000: %d %s", w.Code, w.Body)
	}
}
