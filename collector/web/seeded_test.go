package web

import (
	"log/slog"
	"maps"
	"net/http/httptest"
	"strings"
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

// An ISP halfway through its rollout sees, over the real query layer,
// which of its prefixes block port 25, in both languages, and no address.
func TestPrefixesSeeded(t *testing.T) {
	w := datasettest.NewWorld()
	w.Pools(64520)
	_, d := datasettest.Open(t, w)
	h := New(d, Options{Now: datasettest.Clock, Logger: slog.New(slog.DiscardHandler)})
	want := map[string]string{}
	for _, p := range datasettest.PoolPrefixes {
		want[p.Prefix] = p.Verdict25
	}
	for _, lang := range []string{"en", "ja"} {
		r := get(t, h, "/asn/AS64520/prefixes?window=7d", "Cookie", "lang="+lang)
		if r.status != 200 {
			t.Fatalf("%s: status %d", lang, r.status)
		}
		if got := prefixVerdicts(r.body); !maps.Equal(got, want) {
			t.Errorf("%s: port 25 per prefix %v; want %v", lang, got, want)
		}
		for _, a := range w.Addresses() {
			if strings.Contains(r.body, a+"<") || strings.Contains(r.body, a+" ") || strings.Contains(r.body, a+`"`) {
				t.Errorf("%s: the page holds the address %s", lang, a)
			}
		}
	}
}
