package httpapi

import (
	"encoding/csv"
	"maps"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
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
		"seeded_prefixes":   "/api/v1/asns/64504/prefixes?window=2026-03-08/2026-03-11&page_size=3",
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

// An ISP halfway through its rollout: the API says which of its prefixes
// still let port 25 out, and names no address.
func TestSeededPrefixes(t *testing.T) {
	w := datasettest.NewWorld()
	w.Pools(64520)
	_, d := datasettest.Open(t, w)
	h := New(d, Options{Now: datasettest.Clock})
	rec := get(h, "/api/v1/asns/AS64520/prefixes?window=7d")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET prefixes: %d %s", rec.Code, rec.Body)
	}
	var resp pb.GetPrefixesResponse
	if err := protojson.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range resp.GetPrefixes() {
		for _, pp := range p.GetPorts() {
			if pp.GetPort() == 25 && pp.GetVerdict() != pb.Verdict_VERDICT_UNSPECIFIED {
				got[p.GetPrefix()] = dataset.VerdictName(pp.GetVerdict())
			}
		}
	}
	want := map[string]string{}
	for _, p := range datasettest.PoolPrefixes {
		if p.Verdict25 != "" {
			want[p.Prefix] = p.Verdict25
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("port 25 per prefix %v; want %v", got, want)
	}
	if len(resp.GetPrefixes()) != len(datasettest.PoolPrefixes) {
		t.Errorf("%d prefixes; want %d", len(resp.GetPrefixes()), len(datasettest.PoolPrefixes))
	}
	for _, a := range w.Addresses() {
		if strings.Contains(rec.Body.String(), `"`+a) {
			t.Errorf("the answer holds the address %s", a)
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
