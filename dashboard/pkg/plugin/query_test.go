package plugin

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// week is the seeded week as a dashboard's "last 7 days" asks for it.
var week = backend.TimeRange{From: seededNow.Add(-7 * day), To: seededNow}

func run(t *testing.T, d *Datasource, queries ...string) backend.Responses {
	t.Helper()
	req := &backend.QueryDataRequest{}
	for i, q := range queries {
		req.Queries = append(req.Queries, backend.DataQuery{RefID: string(rune('A' + i)), JSON: []byte(q), TimeRange: week})
	}
	resp, err := d.QueryData(context.Background(), req)
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	return resp.Responses
}

// Every query type against a real collector over the seeded world, its
// frames checked against testdata/*.jsonc (go test -update rewrites them).
func TestQueryGolden(t *testing.T) {
	s, _ := seeded(t)
	d := open(t, s)
	for _, tc := range []struct{ name, query string }{
		{"asns", `{"queryType": "asns"}`},
		{"asns-jp-op25b", `{"queryType": "asns", "country": "jp", "family": "ipv4", "policyClass": "OP25B"}`},
		{"timeline", `{"queryType": "timeline", "asn": 64501}`},
		{"timeline-587", `{"queryType": "timeline", "asn": "AS64506", "family": "ipv4", "port": 587}`},
		{"countries", `{"queryType": "countries", "family": "ipv4"}`},
		{"peers", `{"queryType": "peers", "asn": 64501}`},
		{"peers-ranked-second", `{"queryType": "peers", "asn": 64506}`},
		{"changes", `{"queryType": "changes"}`},
		{"results", `{"queryType": "results", "asn": 64505, "limit": 5}`},
		{"prefixes", `{"queryType": "prefixes", "asn": 64504, "family": "ipv4"}`},
		{"prefixes-587", `{"queryType": "prefixes", "asn": "AS64501", "port": 587}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr := run(t, d, tc.query)["A"]
			if dr.Error != nil {
				t.Fatalf("%s: %v", tc.query, dr.Error)
			}
			if tc.name == "results" {
				// Result ids are UUIDv7 with random bits: check their form,
				// keep them out of the golden file.
				ids := dr.Frames[0].Fields[1]
				for i := range ids.Len() {
					if id := ids.At(i).(string); len(id) != 36 || id[14] != '7' {
						t.Errorf("result_id %q is not a UUIDv7", id)
					}
					ids.Set(i, "(uuidv7)")
				}
			}
			experimental.CheckGoldenJSONResponse(t, "testdata", tc.name, &dr, *update)
		})
	}
}

// The golden files hold what the dataset's own tests expect of the seeded
// world: each ASN's class, AS64506's change and AS64501's IPv6 gap.
func TestQuerySeededWorld(t *testing.T) {
	s, w := seeded(t)
	d := open(t, s)
	rs := run(t, d, `{"queryType": "asns"}`, `{"queryType": "changes", "family": "ipv4"}`, `{"queryType": "peers", "asn": 64501}`,
		`{"queryType": "timeline", "asn": 64506}`)
	for _, dr := range rs {
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
	}
	asns := rs["A"].Frames[0]
	got := map[string]string{}
	for i := range asns.Rows() {
		got[fmt.Sprintf("AS%d %s", asns.At(0, i), asns.At(3, i))] = asns.At(4, i).(string)
	}
	if len(w.ASNs) == 0 {
		t.Fatal("the fixture names no seeded ASN")
	}
	for _, a := range w.ASNs {
		for family, class := range a.Class {
			if k := fmt.Sprintf("AS%d %s", a.ASN, family); got[k] != class {
				t.Errorf("asns: %s class %q; want %q", k, got[k], class)
			}
		}
	}
	changes := rs["B"].Frames[0]
	if changes.Rows() != 1 || changes.At(6, 0) != "AS64506 IPv4 turned to OP25B" || !changes.At(0, 0).(time.Time).Equal(w.ChangeDay) {
		t.Errorf("changes:\n%v\nwant AS64506 IPv4 turned to OP25B on %v", dump(changes), w.ChangeDay)
	}
	if n := rs["C"].Frames[0].Meta.Notices; len(n) != 1 || !strings.HasPrefix(n[0].Text, "ipv6_open_ipv4_blocked") {
		t.Errorf("peers of AS64501: notices %v; want the ipv6_open_ipv4_blocked gap", n)
	}
	tl := rs["D"].Frames
	if len(tl) != 1 || tl[0].Rows() != 7 || tl[0].At(2, 0) != "OPEN" || tl[0].At(2, 6) != "OP25B" || *tl[0].At(1, 6).(*float64) != 1 {
		t.Errorf("timeline of AS64506:\n%v\nwant 7 days from OPEN to OP25B, port 25 blocked at the end", dump(tl...))
	}
}

// The prefixes query says which of a network's prefixes let port 25 out
// (AS64504: two /24s open, two blocked), and holds no address.
func TestQueryPrefixes(t *testing.T) {
	s, w := seeded(t)
	d := open(t, s)
	dr := run(t, d, `{"queryType": "prefixes", "asn": 64504}`)["A"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	f := dr.Frames[0]
	got := map[string]string{}
	for i := range f.Rows() {
		got[f.At(0, i).(string)] = f.At(3, i).(string)
	}
	want := map[string]string{"198.22.0.0/24": "OPEN", "198.22.1.0/24": "BLOCKED_RESET", "198.22.2.0/24": "OPEN", "198.22.3.0/24": "BLOCKED_RESET"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("prefixes of AS64504:\n%v\nwant port 25 %v", dump(f), want)
	}
	table := dump(f)
	if len(w.Addresses) == 0 {
		t.Fatal("the fixture names no seeded address")
	}
	for _, a := range w.Addresses {
		if strings.Contains(table, a+" ") || strings.Contains(table, a+"\n") {
			t.Errorf("the frame holds the address %s", a)
		}
	}
}

func dump(fs ...*data.Frame) string {
	var b strings.Builder
	for _, f := range fs {
		s, _ := f.StringTable(-1, -1)
		b.WriteString(s)
	}
	return b.String()
}

// A query that cannot run gets its own error response; the others in the
// request are answered.
func TestQueryErrors(t *testing.T) {
	s, _ := seeded(t)
	d := open(t, s)
	for _, tc := range []struct {
		query  string
		status backend.Status
		want   string
	}{
		{`{"queryType": "nonsense"}`, backend.StatusBadRequest, `query type "nonsense": want one of asns, changes, countries, live, peers, prefixes, results, timeline`},
		{`{"queryType": "prefixes"}`, backend.StatusBadRequest, "needs an ASN"},
		{`{"queryType": "prefixes", "asn": 65000}`, backend.StatusNotFound, "no measurements from AS65000"},
		{`{"queryType": "asns", "family": "ipv5"}`, backend.StatusBadRequest, `family "ipv5"`},
		{`{"queryType": "asns", "policyClass": "SPAMMY"}`, backend.StatusBadRequest, `policy class "SPAMMY": want one of OP25B, INTERCEPT, OPEN, ALL_SMTP_BLOCKED, MIXED, INSUFFICIENT_DATA`},
		{`{"queryType": "asns", "country": "Japan"}`, backend.StatusBadRequest, `country "JAPAN"`}, // the collector's check
		{`{"queryType": "timeline"}`, backend.StatusBadRequest, "needs an ASN"},
		{`{"queryType": "timeline", "asn": 65000}`, backend.StatusNotFound, "no measurements from AS65000"},
		{`{"queryType": "timeline", "asn": 64501, "port": 443}`, backend.StatusBadRequest, "port 443"},
		{`{"queryType": "peers", "asn": "ASX"}`, backend.StatusBadRequest, "asn"},
		{`{"queryType": "results", "limit": 20000}`, backend.StatusBadRequest, "limit 20000: want 1 to 10000"},
	} {
		rs := run(t, d, tc.query, `{"queryType": "countries"}`)
		if a := rs["A"]; a.Error == nil || a.Status != tc.status || !strings.Contains(a.Error.Error(), tc.want) || a.ErrorSource != backend.ErrorSourceDownstream {
			t.Errorf("%s: status %d, error %v (%s); want %d and %q", tc.query, a.Status, a.Error, a.ErrorSource, tc.status, tc.want)
		}
		if b := rs["B"]; b.Error != nil || len(b.Frames) != 1 || b.Frames[0].Rows() == 0 {
			t.Errorf("%s: the other query of the request: %v, %v", tc.query, b.Error, b.Frames)
		}
	}
	// The collector bounds an export's time range.
	long := backend.DataQuery{RefID: "A", JSON: []byte(`{"queryType": "results"}`), TimeRange: backend.TimeRange{From: week.To.AddDate(0, -3, 0), To: week.To}}
	resp, _ := d.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{long}})
	if a := resp.Responses["A"]; a.Status != backend.StatusBadRequest || !strings.Contains(a.Error.Error(), "longer than the 31 days") {
		t.Errorf("results over 3 months: %d %v; want the collector's bound", a.Status, a.Error)
	}
}

func TestWindow(t *testing.T) {
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	for _, tc := range []struct {
		from, to   string
		start, end string
	}{
		{"2026-03-03T12:00:00Z", "2026-03-10T12:00:00Z", "2026-03-04T00:00:00Z", "2026-03-11T00:00:00Z"}, // last 7 days
		{"2026-03-03T00:00:00Z", "2026-03-10T12:00:00Z", "2026-03-03T00:00:00Z", "2026-03-11T00:00:00Z"}, // 7.5 days: 8
		{"2026-03-10T06:00:00Z", "2026-03-10T12:00:00Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"}, // hours: that day
		{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}, // whole days stay
		{"2026-03-10T21:00:00+09:00", "2026-03-11T09:00:00+09:00", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"},
	} {
		w := window(backend.TimeRange{From: at(tc.from), To: at(tc.to)})
		if got, want := w.GetStart().AsTime().Format(time.RFC3339)+"/"+w.GetEnd().AsTime().Format(time.RFC3339), tc.start+"/"+tc.end; got != want {
			t.Errorf("window(%s, %s) = %s; want %s", tc.from, tc.to, got, want)
		}
	}
}
