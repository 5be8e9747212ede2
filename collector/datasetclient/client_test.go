package datasetclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
	"github.com/op25b/observatory/collector/datasetclient/datasetclienttest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func newClient(t *testing.T, url string, opts ...datasetclient.Option) *datasetclient.Client {
	t.Helper()
	c, err := datasetclient.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9090", "collector.example:8443", "ftp://x", "http://"} {
		if _, err := datasetclient.New(u); err == nil {
			t.Errorf("New(%q) succeeded; want an error", u)
		}
	}
}

func TestAllASNsFollowsPages(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	var got []string
	for a, err := range c.AllASNs(context.Background(), datasetclient.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("AS%d/%s", a.Asn, a.Family))
	}
	if len(got) != 7 {
		t.Errorf("AllASNs yielded %d summaries %v; want all 7", len(got), got)
	}
	reqs := s.Requests()
	want := []string{"/api/v1/asns", "/api/v1/asns?page_token=offset-3", "/api/v1/asns?page_token=offset-6"}
	if strings.Join(reqs, " ") != strings.Join(want, " ") {
		t.Errorf("requests = %q; want %q", reqs, want)
	}
}

func TestAllPrefixesFollowsPages(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	var got []string
	for p, err := range c.AllPrefixes(ctx, 64500, datasetclient.Query{Window: "7d", Country: "ignored"}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Prefix)
	}
	if want := []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8:4a00::/48", "2001:db8:4a01::/48"}; !slices.Equal(got, want) {
		t.Errorf("AllPrefixes(AS64500) = %q; want %q", got, want)
	}
	r, err := c.GetPrefixes(ctx, 64500, datasetclient.Query{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV6, PageSize: 10})
	if err != nil || len(r.Prefixes) != 2 || r.NextPageToken != "" || r.Window == nil {
		t.Errorf("GetPrefixes(AS64500, ipv6) = %v, %v; want its two /48s and the window", r, err)
	}
	want := []string{
		"/api/v1/asns/64500/prefixes?window=7d",
		"/api/v1/asns/64500/prefixes?page_token=offset-3&window=7d",
		"/api/v1/asns/64500/prefixes?family=ipv6&page_size=10",
	}
	if got := s.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := c.GetPrefixes(ctx, 65000, datasetclient.Query{}); !datasetclient.IsNotFound(err) {
		t.Errorf("GetPrefixes(AS65000) = %v; want not found", err)
	}
}

func TestAllASNsStopsEarly(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	for range c.AllASNs(context.Background(), datasetclient.Query{}) {
		break
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("after taking one summary, %d requests; want 1 (no page fetched for nothing)", n)
	}
}

func TestQueryParameters(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL+"/") // a trailing slash is no different
	ctx := context.Background()
	r, err := c.ListASNs(ctx, datasetclient.Query{Country: "JP", Class: pb.PolicyClass_POLICY_CLASS_OP25B,
		Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, Window: "7d", PageSize: 50, ASN: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Asns) != 1 || r.Asns[0].Asn != 64500 || r.NextPageToken != "" {
		t.Errorf("ListASNs(JP, OP25B, ipv4) = %v; want AS64500 alone", r)
	}
	if _, err := c.GetPeers(ctx, 64500, datasetclient.Query{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV6, Country: "ignored"}); err != nil {
		t.Fatal(err)
	}
	changes := 0
	for _, err := range c.AllPolicyChanges(ctx, datasetclient.Query{Country: "jp", ASN: 64500, Window: "2026-02-01/2026-03-01"}) {
		if err != nil {
			t.Fatal(err)
		}
		changes++
	}
	if changes != 3 {
		t.Errorf("AllPolicyChanges(JP, AS64500) gave %d changes; want 3", changes)
	}
	want := []string{
		"/api/v1/asns?class=OP25B&country=JP&family=ipv4&page_size=50&window=7d",
		"/api/v1/asns/64500/peers?family=ipv6",
		"/api/v1/changes?asn=64500&country=jp&window=2026-02-01%2F2026-03-01",
	}
	if got := s.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestResponses(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.SchemaVersion != dataset.SchemaVersion || info.MaxExportDays != 31 || !info.RefreshedAt.IsValid() {
		t.Errorf("Info = %v, %v; want schema 1.0, 31 export days, a refresh time", info, err)
	}
	a, err := c.GetASN(ctx, 64501, datasetclient.Query{})
	if err != nil || len(a.Summaries) != 1 || len(a.EvidenceItems) != 1 || a.EvidenceItems[0].Results != 412 || len(a.Timeline) == 0 {
		t.Errorf("GetASN(64501) = %v, %v; want one summary, a timeline and one evidence item seen 412 times", a, err)
	}
	cs, err := c.ListCountries(ctx, datasetclient.Query{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4})
	if err != nil || len(cs.Countries) != 2 || cs.Countries[1].Classes["OP25B"] != 1 {
		t.Errorf("ListCountries(ipv4) = %v, %v; want DE and JP with class counts", cs, err)
	}
}

func TestAPIError(t *testing.T) {
	s := datasetclienttest.Start(t)
	c := newClient(t, s.URL)
	_, err := c.ListASNs(context.Background(), datasetclient.Query{Window: "a fortnight"})
	var ae *datasetclient.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != 400 || ae.Status != "INVALID_ARGUMENT" {
		t.Fatalf("ListASNs(window=a fortnight) = %v; want an *APIError 400 INVALID_ARGUMENT", err)
	}
	if want := `collector said 400 INVALID_ARGUMENT: invalid request: window "a fortnight": want 30d or 2026-03-01/2026-04-01`; err.Error() != want {
		t.Errorf("error = %q; want %q", err, want)
	}
	_, err = c.GetASN(context.Background(), 64999, datasetclient.Query{})
	if !datasetclient.IsNotFound(err) || !strings.Contains(err.Error(), "404 NOT_FOUND: not found: no measurements from AS64999") {
		t.Errorf("GetASN(64999) = %v; want 404 NOT_FOUND with the collector's message", err)
	}
}

// A server that is not the API (a proxy, an old collector) still gives a
// readable error.
func TestErrorNotFromTheAPI(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>", http.StatusBadGateway)
	}))
	defer ts.Close()
	_, err := newClient(t, ts.URL).Info(context.Background())
	var ae *datasetclient.APIError
	if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "collector said 502 BAD_GATEWAY: <html><body> <h1>502 Bad Gateway</h1>") ||
		!strings.Contains(err.Error(), "is "+strings.TrimPrefix(ts.URL, "http://")+" the collector's HTTP address?") {
		t.Errorf("Info from a proxy's error page = %v", err)
	}
}

// A newer collector may add fields; an older client ignores them.
func TestUnknownFieldsAndHeaders(t *testing.T) {
	var ua, accept string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua, accept = r.Header.Get("User-Agent"), r.Header.Get("Accept")
		fmt.Fprint(w, `{"software_version": "v9", "schema_version": "1.7", "carbon_intensity": {"g": 3}, "licence": "CC-BY-4.0"}`)
	}))
	defer ts.Close()
	info, err := newClient(t, ts.URL, datasetclient.WithUserAgent("op25b/v1.2.3")).Info(context.Background())
	if err != nil || info.SchemaVersion != "1.7" {
		t.Errorf("Info with an unknown field = %v, %v; want schema 1.7", info, err)
	}
	if ua != "op25b/v1.2.3" || accept != "application/json" {
		t.Errorf("User-Agent %q, Accept %q; want op25b/v1.2.3, application/json", ua, accept)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	start := time.Now()
	_, err := newClient(t, ts.URL, datasetclient.WithTimeout(100*time.Millisecond)).Info(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("Info from a silent server = %v after %v; want a deadline exceeded after 100ms", err, time.Since(start))
	}
}
