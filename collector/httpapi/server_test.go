package httpapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

var _ Querier = (*dataset.Dataset)(nil)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// newHandler returns the API over f on the fake clock.
func newHandler(f *fake, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	return New(f, opts)
}

type request struct {
	method, target, remote string
	header                 http.Header
}

func do(h http.Handler, rq request) *httptest.ResponseRecorder {
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	r := httptest.NewRequest(rq.method, rq.target, nil)
	if rq.remote != "" {
		r.RemoteAddr = rq.remote
	}
	for k, v := range rq.header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func get(h http.Handler, target string) *httptest.ResponseRecorder {
	return do(h, request{target: target})
}

// golden compares got, re-indented, with testdata/name.golden, or rewrites
// the file under -update. Re-indenting keeps the files independent of
// protojson's unstable whitespace.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var compact, indented bytes.Buffer
	if err := json.Compact(&compact, got); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, got)
	}
	json.Indent(&indented, compact.Bytes(), "", "  ")
	indented.WriteByte('\n')
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", name, path, firstDiff(indented.String(), string(want)))
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got: " + gl + "\nwant: " + wl
		}
	}
	return ""
}

func TestGolden(t *testing.T) {
	h := newHandler(&fake{}, Options{})
	for _, tc := range []struct{ name, target string }{
		{"info", "/api/v1/info"},
		{"asns", "/api/v1/asns?country=JP&family=ipv4&window=30d"},
		{"asn", "/api/v1/asns/AS64500"},
		{"peers", "/api/v1/asns/64500/peers?family=ipv4"},
		{"prefixes", "/api/v1/asns/AS64500/prefixes?family=ipv4&page_size=2"},
		{"changes", "/api/v1/changes?country=JP"},
		{"countries", "/api/v1/countries"},
		{"error_invalid", "/api/v1/asns?family=ipv5"},
		{"error_not_found", "/api/v1/asns/AS64999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(h, tc.target)
			if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("GET %s: Content-Type = %q; want JSON", tc.target, ct)
			}
			if !strings.HasPrefix(tc.name, "error") {
				if w.Code != http.StatusOK {
					t.Fatalf("GET %s = %d; want 200\n%s", tc.target, w.Code, w.Body)
				}
				if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=60" {
					t.Errorf("GET %s: Cache-Control = %q; want public, max-age=60", tc.target, cc)
				}
			}
			golden(t, tc.name, w.Body.Bytes())
		})
	}
}

func TestRequests(t *testing.T) {
	march := &pb.TimeRange{Start: timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)), End: timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))}
	for _, tc := range []struct {
		target string
		want   proto.Message
	}{
		{"/api/v1/info", &pb.GetInfoRequest{}},
		{"/api/v1/asns", &pb.ListASNsRequest{}},
		{"/api/v1/asns?country=jp&class=op25b&family=4&window=7d&page_size=2&page_token=abc",
			&pb.ListASNsRequest{Country: "JP", PolicyClass: classOP25B, Family: v4, Window: dataset.Rolling(7, now), PageSize: 2, PageToken: "abc"}},
		{"/api/v1/asns?class=ALL_SMTP_BLOCKED&family=ipv6",
			&pb.ListASNsRequest{PolicyClass: pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED, Family: v6}},
		{"/api/v1/asns/AS64500?family=ipv6&window=2026-02-01/2026-03-01", &pb.GetASNRequest{Asn: 64500, Family: v6, Window: march}},
		{"/api/v1/asns/64500/peers", &pb.GetPeersRequest{Asn: 64500}},
		{"/api/v1/asns/64500/prefixes", &pb.GetPrefixesRequest{Asn: 64500}},
		{"/api/v1/asns/AS64500/prefixes?family=ipv6&window=2026-02-01/2026-03-01&page_size=50&page_token=abc",
			&pb.GetPrefixesRequest{Asn: 64500, Family: v6, Window: march, PageSize: 50, PageToken: "abc"}},
		{"/api/v1/changes?country=JP&asn=AS64501&window=90d&page_size=10",
			&pb.ListPolicyChangesRequest{Country: "JP", Asn: 64501, Window: dataset.Rolling(90, now), PageSize: 10}},
		{"/api/v1/countries?family=ipv6&window=30d", &pb.ListCountriesRequest{Family: v6, Window: dataset.Rolling(30, now)}},
		{"/api/v1/export?start=2026-03-01&end=2026-03-08&asn=64500&country=jp&family=ipv4&format=ndjson",
			&pb.ExportResultsRequest{Range: &pb.TimeRange{Start: day("2026-03-01"), End: day("2026-03-08")}, Asn: 64500, Country: "JP", Family: v4}},
		{"/api/v1/export?start=2026-03-01T06:00:00Z&end=2026-03-01T18:30:00%2B09:00",
			&pb.ExportResultsRequest{Range: &pb.TimeRange{Start: ts("2026-03-01T06:00:00Z"), End: ts("2026-03-01T09:30:00Z")}}},
	} {
		f := &fake{}
		w := get(newHandler(f, Options{}), tc.target)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s = %d; want 200\n%s", tc.target, w.Code, w.Body)
			continue
		}
		if got := f.request(); !proto.Equal(got, tc.want) {
			t.Errorf("GET %s: query layer got %v; want %v", tc.target, got, tc.want)
		}
	}
}

type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkError checks that w is the JSON error code/status.
func checkError(t *testing.T, what string, w *httptest.ResponseRecorder, code int, status string) errorBody {
	t.Helper()
	var b errorBody
	if w.Code != code {
		t.Errorf("%s = %d; want %d\n%s", what, w.Code, code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Errorf("%s: error body is not JSON: %v\n%s", what, err, w.Body)
		return b
	}
	if b.Error.Code != code || b.Error.Status != status || b.Error.Message == "" {
		t.Errorf("%s: error = %+v; want code %d, status %s and a message", what, b.Error, code, status)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type = %q; want JSON", what, ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control = %q; want no-store", what, cc)
	}
	if cd := w.Header().Get("Content-Disposition"); cd != "" {
		t.Errorf("%s: an error came with Content-Disposition %q", what, cd)
	}
	return b
}

func TestErrors(t *testing.T) {
	var logs bytes.Buffer
	h := newHandler(&fake{}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, tc := range []struct {
		method, target string
		code           int
		status, says   string
	}{
		{"GET", "/api/v1/asns?family=ipv5", 400, "INVALID_ARGUMENT", `family "ipv5"`},
		{"GET", "/api/v1/asns?class=SPAM", 400, "INVALID_ARGUMENT", `class "SPAM"`},
		{"GET", "/api/v1/asns?window=30x", 400, "INVALID_ARGUMENT", `window "30x"`},
		{"GET", "/api/v1/asns?window=0d", 400, "INVALID_ARGUMENT", `window "0d"`},
		{"GET", "/api/v1/asns?window=2026-04-01/2026-03-01", 400, "INVALID_ARGUMENT", "window"},
		{"GET", "/api/v1/asns?country=JPN", 400, "INVALID_ARGUMENT", `country "JPN"`},
		{"GET", "/api/v1/asns?country=J1", 400, "INVALID_ARGUMENT", `country "J1"`},
		{"GET", "/api/v1/asns?page_size=-1", 400, "INVALID_ARGUMENT", "page_size"},
		{"GET", "/api/v1/asns?famly=ipv4", 400, "INVALID_ARGUMENT", `unknown query parameter "famly"`},
		{"GET", "/api/v1/asns?family=ipv4&family=ipv6", 400, "INVALID_ARGUMENT", `"family" given 2 times`},
		{"GET", "/api/v1/asns?family=%zz", 400, "INVALID_ARGUMENT", "malformed"},
		{"GET", "/api/v1/info?window=30d", 400, "INVALID_ARGUMENT", `unknown query parameter "window"`},
		{"GET", "/api/v1/asns/64500?class=OP25B", 400, "INVALID_ARGUMENT", `unknown query parameter "class"`},
		{"GET", "/api/v1/asns/example", 400, "INVALID_ARGUMENT", `ASN "example"`},
		{"GET", "/api/v1/asns/AS0", 400, "INVALID_ARGUMENT", `ASN "AS0"`},
		{"GET", "/api/v1/asns/4294967296/peers", 400, "INVALID_ARGUMENT", "ASN"},
		{"GET", "/api/v1/changes?asn=x", 400, "INVALID_ARGUMENT", `ASN "x"`},
		{"GET", "/api/v1/asns/64999", 404, "NOT_FOUND", "AS64999"},
		{"GET", "/api/v1/asns/AS64999/peers", 404, "NOT_FOUND", "AS64999"},
		{"GET", "/api/v1/asns/AS64999/prefixes", 404, "NOT_FOUND", "AS64999"},
		{"GET", "/api/v1/asns/64500/prefixes?country=JP", 400, "INVALID_ARGUMENT", `unknown query parameter "country"`},
		{"GET", "/api/v1/asns/x/prefixes", 400, "INVALID_ARGUMENT", `ASN "x"`},
		{"GET", "/api/v1/nope", 404, "NOT_FOUND", "/api/v1/nope"},
		{"GET", "/api/v1/asns/64500/extra", 404, "NOT_FOUND", "no such path"},
		{"GET", "/api/v1/asns/", 404, "NOT_FOUND", "no such path"},
		{"GET", "/", 404, "NOT_FOUND", "openapi.json"},
		{"PUT", "/api/v1/nope", 404, "NOT_FOUND", "no such path"},
		{"GET", "/api/v1/asns?country=ZZ", 500, "INTERNAL", "error id"},
		{"POST", "/api/v1/asns", 405, "METHOD_NOT_ALLOWED", "this path takes GET, HEAD, OPTIONS"},
		{"PUT", "/api/v1/asns/64500", 405, "METHOD_NOT_ALLOWED", "PUT"},
		{"DELETE", "/api/v1/export", 405, "METHOD_NOT_ALLOWED", "DELETE"},
		{"PATCH", "/api/v1/openapi.json", 405, "METHOD_NOT_ALLOWED", "PATCH"},
	} {
		what := tc.method + " " + tc.target
		w := do(h, request{method: tc.method, target: tc.target})
		b := checkError(t, what, w, tc.code, tc.status)
		if !strings.Contains(b.Error.Message, tc.says) {
			t.Errorf("%s: message %q; want it to say %q", what, b.Error.Message, tc.says)
		}
		if allow := w.Header().Get("Allow"); (tc.code == 405) != (allow == "GET, HEAD, OPTIONS") {
			t.Errorf("%s: Allow = %q", what, allow)
		}
	}
	// A server error is logged, never shown, under the id the caller gets.
	b := checkError(t, "500", do(h, request{target: "/api/v1/asns?country=ZZ"}), 500, "INTERNAL")
	id := regexp.MustCompile(`error id ([0-9a-f]+)`).FindStringSubmatch(b.Error.Message)
	if id == nil || strings.Contains(b.Error.Message, errBroken.Error()) {
		t.Fatalf("500 message %q: want an error id and not the cause", b.Error.Message)
	}
	if !regexp.MustCompile(`error_id=` + id[1] + `.*` + regexp.QuoteMeta(errBroken.Error())).MatchString(logs.String()) {
		t.Errorf("the 500 was not logged with error_id=%s and its cause; log:\n%s", id[1], logs.String())
	}
}

// TestHugeParametersAreClipped: an error repeats at most a little of a
// parameter (issue 10: a 1 MB parameter came back in a 1 MB body).
func TestHugeParametersAreClipped(t *testing.T) {
	h := newHandler(&fake{}, Options{})
	huge := strings.Repeat("x", 1<<20)
	for _, target := range []string{
		"/api/v1/asns?country=" + huge,
		"/api/v1/asns?window=" + huge,
		"/api/v1/asns?page_size=" + huge,
		"/api/v1/asns?" + huge + "=1",
		"/api/v1/asns/" + huge,
		"/api/v1/" + huge,
		"/api/v1/export?start=2026-03-01&end=2026-03-02&format=" + huge,
	} {
		w := do(h, request{target: target})
		if w.Code != 400 && w.Code != 404 || w.Body.Len() > 1024 {
			t.Errorf("GET %s…: %d with %d bytes; want a 400 or 404 under 1 KiB", target[:40], w.Code, w.Body.Len())
		}
	}
}

func TestCORS(t *testing.T) {
	h := newHandler(&fake{}, Options{})
	origin := http.Header{"Origin": {"https://researcher.example"}}

	w := do(h, request{target: "/api/v1/info", header: origin})
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("GET: Access-Control-Allow-Origin = %q; want *", got)
	}
	if got := w.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Content-Disposition") {
		t.Errorf("GET: Access-Control-Expose-Headers = %q; want Content-Disposition exposed", got)
	}

	preflight := http.Header{"Origin": origin["Origin"], "Access-Control-Request-Method": {"GET"}}
	w = do(h, request{method: "OPTIONS", target: "/api/v1/asns/AS64500/peers?family=ipv4", header: preflight})
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Errorf("preflight = %d %q; want 204 and no body", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
		"Access-Control-Max-Age":       "86400",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("preflight: %s = %q; want %q", k, got, want)
		}
	}
	checkError(t, "preflight of an unknown path", do(h, request{method: "OPTIONS", target: "/api/v1/nope", header: preflight}), 404, "NOT_FOUND")

	w = do(h, request{method: "HEAD", target: "/api/v1/countries"})
	if w.Code != http.StatusOK || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("HEAD = %d with headers %v; want 200 with CORS", w.Code, w.Header())
	}
}
