package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/advice"
)

func newTestHandler(q Querier, log io.Writer) http.Handler {
	if log == nil {
		log = io.Discard
	}
	return New(q, Options{
		Now:             func() time.Time { return fakeNow },
		Logger:          slog.New(slog.NewTextHandler(log, nil)),
		SoftwareVersion: "v0.4.0-test",
	})
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, h http.Handler, path string, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Result().Header, rec.Body.String()}
}

var rowRE = regexp.MustCompile(`<tr data-asn="(\d+)" data-family="(ipv[46])" data-class="([A-Z_0-9]+)"[^>]*?( hidden)?>`)

type row struct {
	asn, family, class string
	hidden             bool
}

// asnRows parses the overview's ASN table rows.
func asnRows(body string) []row {
	var out []row
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, row{m[1], m[2], m[3], m[4] != ""})
	}
	return out
}

func TestOverview(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	tests := []struct {
		path string
		rows int
		keep func(row) bool // every row must satisfy it
	}{
		{"/", len(fakeNets), nil},
		{"/?country=JP", 7, func(r row) bool { return strings.HasPrefix(r.asn, "6450") && r.asn <= "64503" }},
		{"/?country=jp&family=ipv6", 3, func(r row) bool { return r.family == "ipv6" }},
		{"/?class=OP25B", 3, func(r row) bool { return r.class == "OP25B" }},
		{"/?class=all_smtp_blocked", 1, func(r row) bool { return r.asn == "64502" }},
		{"/?family=ipv4", 8, func(r row) bool { return r.family == "ipv4" }},
		{"/?window=7d", len(fakeNets), nil},
		{"/?window=2026-03-01/2026-03-15", len(fakeNets), nil},
	}
	for _, tt := range tests {
		r := get(t, h, tt.path)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: status %d; want 200\n%s", tt.path, r.status, r.body)
			continue
		}
		rows := asnRows(r.body)
		if len(rows) != tt.rows {
			t.Errorf("GET %s: %d ASN rows; want %d", tt.path, len(rows), tt.rows)
		}
		for _, row := range rows {
			if tt.keep != nil && !tt.keep(row) {
				t.Errorf("GET %s: row %+v should have been filtered out", tt.path, row)
			}
		}
	}

	// Every class has its badge; the shares carry their interval.
	r := get(t, h, "/")
	for _, name := range dataset.ClassNames() {
		if !strings.Contains(r.body, `class="badge c-`+classKey(name)+`"`) {
			t.Errorf("overview: no badge for class %s", name)
		}
	}
	if !regexp.MustCompile(`\d+% <span class="ci">\(\d+–\d+%\)</span>`).MatchString(r.body) {
		t.Errorf("overview: no share shown as 82%% (71–90%%)")
	}
	if !strings.Contains(r.body, `<option value="7d">`) || !strings.Contains(r.body, `<option value="30d" selected>`) {
		t.Errorf("overview: window selector lacks 7d, or 30d is not the default")
	}
	// The countries table: JP has 4 ASNs per IPv4.
	if !regexp.MustCompile(`(?s)<a href="/\?country=JP&amp;family=ipv4" class="country">JP</a>.*?<td class="num">4</td>`).MatchString(r.body) {
		t.Errorf("overview: countries table lacks JP IPv4 with 4 ASNs")
	}

	// The text filter hides rows on the server too (the page works without
	// JavaScript).
	r = get(t, h, "/?q=sakura")
	shown := 0
	for _, row := range asnRows(r.body) {
		if !row.hidden {
			shown++
			if row.asn != "64500" {
				t.Errorf("?q=sakura shows AS%s", row.asn)
			}
		}
	}
	if shown != 2 {
		t.Errorf("?q=sakura shows %d rows; want 2", shown)
	}

	r = get(t, h, "/?window=7d")
	if !strings.Contains(r.body, `<option value="7d" selected>`) {
		t.Errorf("?window=7d: 7d is not selected")
	}
}

func TestASNPage(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	for _, path := range []string{"/asn/64500", "/asn/AS64500", "/asn/as64500?window=90d"} {
		r := get(t, h, path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d; want 200", path, r.status)
		}
		for _, want := range []string{
			"Sakura Broadband",
			`<span class="fam">IPv4</span> <span class="badge c-op25b"`,
			`<span class="fam">IPv6</span> <span class="badge c-open"`,
			"IPv4 turned from OPEN to OP25B on 2026-03-01.",
			`id="timeline-chart"`,
			`class="change-mark"`,
			"Rank 2 of 4 in JP.",
			"Port 25 is blocked over IPv4 but open over IPv6",
			`<th scope="row" class="num">25</th>`,
			`<th scope="row" class="num">587</th>`,
			`<th scope="row" class="num">465</th>`,
			`<abbr title="Silently dropped">BLOCKED_TIMEOUT</abbr>`,
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("GET %s: page lacks %q", path, want)
			}
		}
	}

	// Timeline cells: one per day with data, coloured by that day's class.
	r := get(t, h, "/asn/AS64500")
	if n := strings.Count(r.body, `<rect class="cell c-open"`); n != 10+30 {
		t.Errorf("AS64500: %d OPEN cells; want 40 (IPv4 before 2026-03-01 and every IPv6 day)", n)
	}
	if n := strings.Count(r.body, `<rect class="cell c-op25b"`); n != 20 {
		t.Errorf("AS64500: %d OP25B cells; want 20 (IPv4 from 2026-03-01)", n)
	}

	// Peers with a gap of a kind we have no text for, and evidence.
	r = get(t, h, "/asn/64501")
	for _, want := range []string{"Another gap: starttls_stripped.", "&lt;b&gt;STARTTLS&lt;/b&gt; removed", "first seen", "812 results", "Port 25 is intercepted"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("AS64501: page lacks %q", want)
		}
	}
}

// prefixRowRE parses a row of the prefixes page: the prefix, then the
// verdict of port 25 (empty for none).
var prefixRowRE = regexp.MustCompile(`<th scope="row"><code>([^<]+)</code></th>\s*<td>IPv[46]</td>\s*<td class="num">\d+</td><td>(?:<span class="pv pv-\w+">([A-Z_]+)</span>)?`)

// prefixVerdicts returns the port 25 verdict of each row of a prefixes
// page, "" for none.
func prefixVerdicts(body string) map[string]string {
	out := map[string]string{}
	for _, m := range prefixRowRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func TestPrefixesPage(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	if r := get(t, h, "/asn/AS64500"); !strings.Contains(r.body, `<a href="/asn/AS64500/prefixes">`) {
		t.Errorf("the ASN page does not link to its prefixes")
	}
	if r := get(t, h, "/asn/AS64500?window=90d"); !strings.Contains(r.body, `<a href="/asn/AS64500/prefixes?window=90d">`) {
		t.Errorf("the ASN page's link to its prefixes loses the window")
	}
	r := get(t, h, "/asn/64500/prefixes")
	if r.status != http.StatusOK {
		t.Fatalf("GET /asn/64500/prefixes: status %d; want 200", r.status)
	}
	want := map[string]string{"192.0.2.0/24": "BLOCKED_TIMEOUT", "198.51.100.0/24": "OPEN", "203.0.113.0/24": "OPEN", "100.64.7.0/24": "INTERCEPTED"}
	if got := prefixVerdicts(r.body); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("first page's port 25 verdicts %v; want %v", got, want)
	}
	for _, s := range []string{
		`title="agents with this verdict, of those with a conclusive result">1/2</span>`, // 198.51.100.0/24's agents disagree
		`<span class="pd pd-blocked" title="2026-03-20: BLOCKED_RESET"></span>`,
		`<span class="pd pd-open" title="2026-03-14: OPEN"></span>`,
		`<a class="btn-secondary" href="/asn/AS64500/prefixes?page_token=4">`,
		`<a href="/asn/AS64500">AS64500</a>`,
	} {
		if !strings.Contains(r.body, s) {
			t.Errorf("prefixes page lacks %q", s)
		}
	}
	if n := strings.Count(r.body, `<span class="pd pd-`); n != 4*30+5 { // and the legend's
		t.Errorf("%d day cells; want 30 for each of 4 prefixes and 5 in the legend", n)
	}
	r = get(t, h, "/asn/64500/prefixes?page_token=4&window=7d")
	if got := prefixVerdicts(r.body); len(got) != 1 || got["2001:db8:5a00::/48"] != "OPEN" || strings.Contains(r.body, `btn-secondary" href=`) {
		t.Errorf("second page: %v; want 2001:db8:5a00::/48 OPEN and no further page", got)
	}
	r = get(t, h, "/asn/64500/prefixes?family=ipv6")
	if got := prefixVerdicts(r.body); len(got) != 1 || !strings.Contains(r.body, `<input type="hidden" name="family" value="ipv6">`) {
		t.Errorf("family=ipv6: %v; want the one /48, and the window form keeping the family", got)
	}
	if r := get(t, h, "/asn/64503/prefixes"); r.status != http.StatusOK || !strings.Contains(r.body, "No prefix of this network has results in this window.") {
		t.Errorf("AS64503 without prefixes: %d; want 200 saying so", r.status)
	}
	for path, status := range map[string]int{"/asn/AS64999/prefixes": 404, "/asn/x/prefixes": 400, "/asn/64500/prefixes?family=ipv5": 400} {
		if r := get(t, h, path); r.status != status {
			t.Errorf("GET %s: %d; want %d", path, r.status, status)
		}
	}
}

// TestEvidenceInert shows that a hostile relay's banner, and an ASN name
// with markup, come out as text.
func TestEvidenceInert(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	r := get(t, h, "/asn/AS64501")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	for _, bad := range []string{"<script>alert", "<img src=x", `"quoted"`, "onerror=alert(1)>"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("evidence rendered live markup: %q in the page", bad)
		}
	}
	want := `<pre><code>220 mx.hikari-mobile.example ESMTP &lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &#39;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quoted&#34;</code></pre>`
	if !strings.Contains(r.body, want) {
		t.Errorf("evidence not escaped as text; want %s", want)
	}
	if n := strings.Count(r.body, "<script"); n != 1 {
		t.Errorf("%d <script elements; want only ours", n)
	}

	r = get(t, h, "/?country=DE")
	if strings.Contains(r.body, "<eG>") || !strings.Contains(r.body, "Berliner Funk &amp; Netz &#34;B&amp;F&#34; &lt;eG&gt;") {
		t.Errorf("ASN name not escaped")
	}
}

func TestCheckPage(t *testing.T) {
	h := New(newFake(), Options{Now: func() time.Time { return fakeNow }, Logger: slog.New(slog.DiscardHandler), Submissions: true})
	r := get(t, h, "/check")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	for _, want := range []string{
		"op25b-agent check --submit http://example.com",
		"op25b-agent check --refmta https://REFMTA-HOST/identity.json",
		"go install github.com/op25b/observatory/agent/cmd/op25b-agent@latest",
		"It writes only EHLO, STARTTLS and QUIT",
		"<code>BLOCKED_TIMEOUT</code>", "<code>INCONCLUSIVE</code>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/check lacks %q", want)
		}
	}

	// A collector that takes no one-off contributions does not offer them.
	if r := get(t, newTestHandler(newFake(), nil), "/check"); strings.Contains(r.body, "--submit") {
		t.Errorf("/check offers --submit on a collector that takes no submissions")
	}
	if r := get(t, New(newFake(), Options{Submissions: true, PublicURL: "https://observatory.example/"}), "/check"); !strings.Contains(r.body, "op25b-agent check --submit https://observatory.example</code>") {
		t.Errorf("/check does not tell volunteers to submit to the public URL")
	}

	// Without the query layer the page still serves its instructions.
	q := newFake()
	q.fail["GetInfo"] = errors.New("connection refused")
	if r := get(t, newTestHandler(q, nil), "/check"); r.status != http.StatusOK {
		t.Errorf("/check with GetInfo failing: status %d; want 200", r.status)
	}
}

func TestErrors(t *testing.T) {
	internal := errors.New("pgx: connect to 10.1.2.3:5432: password authentication failed")
	tests := []struct {
		name   string
		path   string
		fail   map[string]error
		status int
		want   string
		reject string
	}{
		{name: "unknown ASN", path: "/asn/AS64999", status: 404, want: "No measurements of AS64999"},
		{name: "not an ASN", path: "/asn/sakura", status: 400, want: "ASN &#34;sakura&#34;: want a number"},
		{name: "bad window", path: "/?window=fortnight", status: 400, want: "window &#34;fortnight&#34;"},
		{name: "bad window on ASN page", path: "/asn/64500?window=0d", status: 400, want: "window &#34;0d&#34;"},
		{name: "bad class", path: "/?class=SPAMMY", status: 400, want: "class &#34;SPAMMY&#34;"},
		{name: "bad family", path: "/?family=ipx", status: 400, want: "family &#34;ipx&#34;"},
		{name: "bad country", path: "/?country=Japan", status: 400, want: "two-letter"},
		{name: "no such page", path: "/nowhere", status: 404, want: "We have no page here"},
		{name: "no such static file", path: "/static/evil.js", status: 404},
		{name: "query layer down", path: "/", fail: map[string]error{"ListASNs": internal}, status: 500,
			want: "Something went wrong on our side", reject: "password"},
		{name: "query layer down on ASN page", path: "/asn/64500", fail: map[string]error{"GetPeers": internal}, status: 500,
			reject: "10.1.2.3"},
		{name: "invalid from the query layer", path: "/", fail: map[string]error{"ListCountries": fmt.Errorf("%w: window longer than 366 days", dataset.ErrInvalid)},
			status: 400, want: "window longer than 366 days"},
		{name: "not found from the query layer", path: "/", fail: map[string]error{"ListASNs": fmt.Errorf("list: %w", dataset.ErrNotFound)}, status: 404},
		{name: "no peers is no failure", path: "/asn/64500", fail: map[string]error{"GetPeers": dataset.ErrNotFound}, status: 200,
			want: "No peer benchmark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFake()
			for m, err := range tt.fail {
				q.fail[m] = err
			}
			var log bytes.Buffer
			r := get(t, newTestHandler(q, &log), tt.path)
			if r.status != tt.status {
				t.Errorf("GET %s: status %d; want %d", tt.path, r.status, tt.status)
			}
			if tt.want != "" && !strings.Contains(r.body, tt.want) {
				t.Errorf("GET %s: page lacks %q:\n%s", tt.path, tt.want, r.body)
			}
			if tt.reject != "" && strings.Contains(r.body, tt.reject) {
				t.Errorf("GET %s: page shows internals %q", tt.path, tt.reject)
			}
			if tt.status == 500 && !strings.Contains(log.String(), "password authentication failed") {
				t.Errorf("GET %s: the failure was not logged: %q", tt.path, log.String())
			}
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	css := get(t, h, "/").body
	cssURL := regexp.MustCompile(`href="(/static/app\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(css)
	jsURL := regexp.MustCompile(`src="(/static/app\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(css)
	if cssURL == nil || jsURL == nil {
		t.Fatalf("page links no versioned CSS or JavaScript")
	}
	for _, tt := range []struct{ path, ctype, cache string }{
		{"/", "text/html; charset=utf-8", "no-cache"},
		{"/asn/64500", "text/html; charset=utf-8", "no-cache"},
		{"/check", "text/html; charset=utf-8", "no-cache"},
		{"/nowhere", "text/html; charset=utf-8", "no-cache"},
		{cssURL[1], "text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		{jsURL[1], "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/static/app.css", "text/css; charset=utf-8", "no-cache"},
		{"/favicon.ico", "image/svg+xml", ""},
	} {
		r := get(t, h, tt.path)
		csp := r.header.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:"} {
			if !strings.Contains(csp, d) {
				t.Errorf("GET %s: CSP %q lacks %q", tt.path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP allows inline code", tt.path)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tt.path, got)
		}
		if r.header.Get("Referrer-Policy") == "" {
			t.Errorf("GET %s: no Referrer-Policy", tt.path)
		}
		if got := r.header.Get("Content-Type"); got != tt.ctype {
			t.Errorf("GET %s: Content-Type %q; want %q", tt.path, got, tt.ctype)
		}
		if tt.cache != "" && r.header.Get("Cache-Control") != tt.cache {
			t.Errorf("GET %s: Cache-Control %q; want %q", tt.path, r.header.Get("Cache-Control"), tt.cache)
		}
	}

	// The CSP forbids inline style and script: the pages have none.
	for _, path := range []string{"/", "/asn/64500", "/asn/64501", "/check", "/nowhere"} {
		body := get(t, h, path).body
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`<style`), regexp.MustCompile(`<script>`),
			regexp.MustCompile(`\son[a-z]+="`), regexp.MustCompile(`(href|src)="(https?:)?//[^"]*\.(css|js|woff2?)`),
		} {
			if m := bad.FindString(body); m != "" {
				t.Errorf("GET %s: %q breaks the CSP or loads from elsewhere", path, m)
			}
		}
	}
}

func TestLanguage(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	tests := []struct {
		name   string
		path   string
		header []string
		lang   string
	}{
		{"default", "/", nil, "en"},
		{"query", "/?lang=ja", nil, "ja"},
		{"query wins over header", "/?lang=en", []string{"Accept-Language", "ja"}, "en"},
		{"cookie", "/", []string{"Cookie", "lang=ja"}, "ja"},
		{"cookie wins over header", "/check", []string{"Cookie", "lang=en", "Accept-Language", "ja-JP"}, "en"},
		{"header ja first", "/", []string{"Accept-Language", "ja-JP,ja;q=0.9,en;q=0.8"}, "ja"},
		{"header en first", "/", []string{"Accept-Language", "en-US,en;q=0.9,ja;q=0.8"}, "en"},
		{"header by quality", "/", []string{"Accept-Language", "en;q=0.5, ja"}, "ja"},
		{"header unsupported first", "/", []string{"Accept-Language", "fr-FR, ja;q=0.7"}, "ja"},
		{"header unsupported only", "/", []string{"Accept-Language", "de"}, "en"},
		{"bad query ignored", "/?lang=xx", []string{"Accept-Language", "ja"}, "ja"},
		{"error page", "/asn/64999?lang=ja", nil, "ja"},
	}
	for _, tt := range tests {
		r := get(t, h, tt.path, tt.header...)
		if !strings.Contains(r.body, `<html lang="`+tt.lang+`">`) {
			t.Errorf("%s: GET %s %v: page not in %s", tt.name, tt.path, tt.header, tt.lang)
		}
	}

	r := get(t, h, "/?lang=ja")
	c := r.header.Get("Set-Cookie")
	if !strings.HasPrefix(c, "lang=ja;") || !strings.Contains(c, "Path=/") {
		t.Errorf("?lang=ja sets cookie %q; want lang=ja on /", c)
	}
	if !strings.Contains(r.body, "ネットワーク別のポート25ブロック状況") {
		t.Errorf("Japanese overview lacks its title")
	}
	// Links keep an explicit choice, so it survives without cookies.
	if !strings.Contains(r.body, `href="/asn/AS64500?lang=ja"`) || !strings.Contains(r.body, `href="/check?lang=ja"`) {
		t.Errorf("links of a ?lang=ja page do not keep the language")
	}
	if !strings.Contains(r.body, `<input type="hidden" name="lang" value="ja">`) {
		t.Errorf("forms of a ?lang=ja page do not keep the language")
	}
	// A language from Accept-Language alone is not written into links.
	r = get(t, h, "/", "Accept-Language", "ja")
	if strings.Contains(r.body, `href="/asn/AS64500?lang=ja"`) || r.header.Get("Set-Cookie") != "" {
		t.Errorf("Accept-Language alone made the language sticky")
	}
	if !strings.Contains(r.header.Get("Vary"), "Accept-Language") {
		t.Errorf("Vary %q lacks Accept-Language", r.header.Get("Vary"))
	}

	// Dates are ISO in both languages.
	r = get(t, h, "/asn/64500?lang=ja")
	if !strings.Contains(r.body, "2026-03-01、IPv4 が OPEN から OP25B に変わりました。") {
		t.Errorf("Japanese change line missing or not ISO-dated")
	}
}

// TestEveryPageInBothLanguages renders each page in each language and
// looks for untranslated keys and formatting mistakes.
func TestEveryPageInBothLanguages(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	paths := []string{"/", "/?country=US&class=MIXED", "/check", "/nowhere", "/asn/AS64999", "/?window=bad", "/result/" + fakeSubmission,
		"/asn/AS64500/prefixes", "/asn/AS64503/prefixes", "/asn/AS64999/prefixes"}
	for _, n := range fakeNets {
		paths = append(paths, fmt.Sprintf("/asn/AS%d", n.asn))
	}
	for lang := range messages {
		for _, path := range paths {
			r := get(t, h, path, "Cookie", "lang="+lang)
			if r.status >= 500 {
				t.Errorf("%s %s: status %d", lang, path, r.status)
			}
			if !strings.Contains(r.body, `<html lang="`+lang+`">`) {
				t.Errorf("%s %s: not in %s", lang, path, lang)
			}
			if i := strings.Index(r.body, "[["); i >= 0 {
				t.Errorf("%s %s: missing message %s", lang, path, r.body[i:min(len(r.body), i+60)])
			}
			if i := strings.Index(r.body, "%!"); i >= 0 {
				t.Errorf("%s %s: formatting error %s", lang, path, r.body[i:min(len(r.body), i+60)])
			}
		}
	}
}

func TestShareText(t *testing.T) {
	s := newShare(0.82, 0.71, 0.90)
	if got := s.Text + " (" + s.Interval + ")"; got != "82% (71–90%)" {
		t.Errorf("share = %q; want 82%% (71–90%%)", got)
	}
}

// TestRefMTANotice: a flagged reference MTA gets a notice on the overview,
// in both languages, and every reference MTA a row of the table.
func TestRefMTANotice(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	for lang, want := range map[string][]string{
		"en": {"A reference MTA departs from the others.", "refmta-osaka (IPv4, port 25) sees far more blocked connections"},
		"ja": {"他と食い違うリファレンスMTAがあります。", "refmta-osaka（IPv4、ポート25）は"},
	} {
		r := get(t, h, "/?lang="+lang)
		notices := regexp.MustCompile(`(?s)<div class="notice" role="status">(.*?)</div>`).FindAllStringSubmatch(r.body, -1)
		if len(notices) != 1 {
			t.Errorf("%s overview: %d notices; want 1 (refmta-osaka)", lang, len(notices))
			continue
		}
		for _, w := range want {
			if !strings.Contains(notices[0][1], w) {
				t.Errorf("%s overview notice lacks %q:\n%s", lang, w, notices[0][1])
			}
		}
		if strings.Contains(r.body, "%!") {
			t.Errorf("%s overview has a formatting error (%%!)", lang)
		}
		rows := regexp.MustCompile(`<tr data-refmta="([^"]+)"( class="flagged")?>`).FindAllStringSubmatch(r.body, -1)
		if len(rows) != 2 || rows[0][1] != "refmta-tokyo" || rows[0][2] != "" || rows[1][1] != "refmta-osaka" || rows[1][2] == "" {
			t.Errorf("%s overview: reference MTA rows %q; want refmta-tokyo, then refmta-osaka flagged", lang, rows)
		}
		if !strings.Contains(r.body, `<td class="num" data-v="59">59</td>`) {
			t.Errorf("%s overview: refmta-osaka's 59 charged results not shown", lang)
		}
	}
}

// TestCheckPageDownloads: with a release directory, the check page offers
// the file for the visitor's system first, lists every file, says how to
// check the signature, and /download/ serves the release's files and no
// others.
func TestCheckPageDownloads(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"op25b-agent_v1_linux_amd64", "op25b-agent_v1_linux_arm64", "op25b-agent_v1_windows_amd64.exe",
		"op25b-agent_v1_windows_arm64.exe", "op25b-agent_v1_darwin_arm64", "op25b-agent_v1_darwin_amd64",
		"SHA256SUMS", "SHA256SUMS.minisig", "op25b-release.pub", "notes.txt",
		"op25b-agent_1.2.3_amd64.deb", "op25b-agent-1.2.3-1.aarch64.rpm", "op25b-agent_0.0.0~9fe10ce_x86_64.apk", "op25b-agent_1.2.3_mipsel_24kc.ipk"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("content of "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := New(newFake(), Options{Now: func() time.Time { return fakeNow }, Logger: slog.New(slog.DiscardHandler), Downloads: dir})
	page := func(ua string) string {
		req := httptest.NewRequest("GET", "/check", nil)
		req.Header.Set("User-Agent", ua)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("/check: status %d", rec.Code)
		}
		return rec.Body.String()
	}
	yours := func(body string) string {
		_, after, _ := strings.Cut(body, `class="yours"`)
		before, _, _ := strings.Cut(after, "</p>")
		return before
	}
	for ua, want := range map[string]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36":           "op25b-agent_v1_windows_amd64.exe",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15": "op25b-agent_v1_darwin_arm64",
		"Mozilla/5.0 (X11; Linux aarch64; rv:133.0) Gecko/20100101 Firefox/133.0":                           "op25b-agent_v1_linux_arm64",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0":                            "op25b-agent_v1_linux_amd64",
	} {
		body := page(ua)
		first := yours(body)
		if i := strings.Index(first, "/download/"); i < 0 || !strings.HasPrefix(first[i:], "/download/"+want+`"`) {
			t.Errorf("%s: offered first %q; want %s", ua, first, want)
		}
		if strings.Contains(body, "go install") || !strings.Contains(body, "minisign -Vm SHA256SUMS -p op25b-release.pub") ||
			strings.Count(body, `<tr><td><a href="/download/`) != 10 {
			t.Errorf("%s: the page lacks the list of 6 files and 4 packages or the minisign command, or still says go install", ua)
		}
		for _, want := range []string{"<td>deb · amd64</td>", "<td>rpm · aarch64</td>", "<td>apk · x86_64</td>", "<td>ipk · mipsel_24kc</td>"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the packages' table lacks %q", ua, want)
			}
		}
	}
	if body := page("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"); strings.Contains(body, `class="yours"`) {
		t.Error("a phone was offered an agent")
	}
	for path, status := range map[string]int{
		"/download/op25b-agent_v1_windows_amd64.exe":  http.StatusOK,
		"/download/SHA256SUMS.minisig":                http.StatusOK,
		"/download/op25b-agent_1.2.3_mipsel_24kc.ipk": http.StatusOK,
		"/download/op25b-agent-1.2.3-1.aarch64.rpm":   http.StatusOK,
		"/download/notes.txt":                         http.StatusNotFound,
		"/download/":                                  http.StatusNotFound,
		"/download/../web_test.go":                    http.StatusNotFound, // the mux redirects it out of /download/
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if (rec.Code == http.StatusOK) != (status == http.StatusOK) {
			t.Errorf("GET %s: %d; want %d", path, rec.Code, status)
		}
		if (status == http.StatusOK) != strings.HasPrefix(rec.Body.String(), "content of ") {
			t.Errorf("GET %s: %q", path, rec.Body.String())
		}
	}
}

// TestResultPage: a one-off contribution's page says what the round means
// for mail in the advice texts the agent prints, in the visitor's
// language, with the round's networks (prefix and ASN, linked) and its
// results.
func TestResultPage(t *testing.T) {
	h := newTestHandler(newFake(), nil)
	for _, lang := range advice.Languages {
		r := get(t, h, "/result/"+fakeSubmission+"?lang="+lang)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d", lang, r.status)
		}
		head, body := advice.Text(advice.OP25B, lang)
		for _, want := range []string{
			template.HTMLEscapeString(head), template.HTMLEscapeString(body), "192.0.2.0/24", "2001:db8:4a00::/48",
			`<a href="/asn/AS64501?lang=` + lang + `">AS64501</a> Hikari Mobile`, "<code>refmta-tokyo</code>",
			`<span class="verdict">BLOCKED_TIMEOUT</span>`, "/api/v1/submissions/" + fakeSubmission,
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("%s: the result page lacks %q", lang, want)
			}
		}
		if open, _ := advice.Text(advice.Open25, lang); strings.Contains(r.body, template.HTMLEscapeString(open)) {
			t.Errorf("%s: the result page says port 25 is open; IPv4 and IPv6 both blocked it", lang)
		}
	}
	for path, status := range map[string]int{
		"/result/019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c98": http.StatusNotFound,
		"/result/nope": http.StatusNotFound,
	} {
		if r := get(t, h, path); r.status != status {
			t.Errorf("GET %s: %d; want %d", path, r.status, status)
		}
	}
}

// TestReplicaFooter: a page read from a replica says so, with how far
// behind the primary it is; one read from the primary says nothing.
func TestReplicaFooter(t *testing.T) {
	q := newFake()
	if r := get(t, newTestHandler(q, nil), "/?lang=en"); strings.Contains(r.body, "replica") {
		t.Errorf("a page read from the primary mentions a replica")
	}
	q.replicaLag = durationpb.New(1500 * time.Millisecond)
	for lang, want := range map[string]string{"en": "Read from a replica, 1.5s behind", "ja": "レプリカから読み出し（遅れ 1.5s）"} {
		if r := get(t, newTestHandler(q, nil), "/?lang="+lang); !strings.Contains(r.body, want) {
			t.Errorf("%s: the footer lacks %q", lang, want)
		}
	}
}

// TestFreshnessFooter: the footer says when the timelines and, refreshed
// less often, the rolling windows were last brought up to date.
func TestFreshnessFooter(t *testing.T) {
	q := newFake()
	for lang, want := range map[string]string{
		"en": "Timelines refreshed <time>2026-03-20 09:55 UTC</time>, rolling windows <time>2026-03-20 09:46 UTC</time>",
		"ja": "時系列の更新 <time>2026-03-20 09:55 UTC</time>, 集計期間の更新 <time>2026-03-20 09:46 UTC</time>",
	} {
		if r := get(t, newTestHandler(q, nil), "/?lang="+lang); !strings.Contains(r.body, want) {
			t.Errorf("%s: the footer lacks %q", lang, want)
		}
	}
}
