package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/advice"
	"github.com/op25b/observatory/internal/testenv"
)

// wantASN is one row the browser must find: an ASN and family with its
// class, such as {64500, "ipv4", "OP25B"}.
type wantASN struct {
	ASN    uint32
	Family string // "ipv4" or "ipv6"
	Class  string // a dataset.ClassName
}

// TestBrowser runs the pages over the fake dataset in headless Chromium.
func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(newTestHandler(newFake(), nil))
	defer srv.Close()
	var want []wantASN
	for _, n := range fakeNets {
		want = append(want, wantASN{ASN: n.asn, Family: dataset.FamilyName(n.family), Class: dataset.ClassName(n.class)})
	}
	checkPages(t, srv.URL, "fake", want, fakeSubmission)
}

// artifactDir is where the screenshots go: $OP25B_ARTIFACTS, else a fixed
// directory under the system's temporary directory.
func artifactDir(t *testing.T, name string) string {
	dir := os.Getenv("OP25B_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "op25b-artifacts")
	}
	dir = filepath.Join(dir, "web", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artefact directory: %v", err)
	}
	return dir
}

// checkPages drives headless Chromium over the web page served at baseURL
// and checks what a visitor sees: the seeded ASNs with their class badges on
// the overview and their own pages, sorting and filtering, the Japanese
// page, no horizontal overflow on a phone, and no console error, uncaught
// exception or failed load anywhere, and the page of the one-off
// contribution submission unless it is empty. It saves full-page
// screenshots.
func checkPages(t *testing.T, baseURL, name string, want []wantASN, submission string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("checkPages: no ASN to look for")
	}
	testenv.Integration(t, "Chromium")
	exe, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "chromium is not installed (make testdeps installs it): "+err.Error())
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	b := &browser{t: t, base: strings.TrimRight(baseURL, "/"), dir: artifactDir(t, name)}
	var cancelTab context.CancelFunc
	b.ctx, cancelTab = chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	defer cancelTab()
	if err := chromedp.Do(b.ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	b.checkOverview(want)
	b.checkSort()
	b.checkFilter(want[0])
	b.checkASNPages(want)
	b.checkCheckPage()
	if submission != "" {
		b.checkResultPage(submission)
	}
	b.checkJapanese()
	b.checkPhone(want[0].ASN)
	b.noProblems("the end")
	t.Logf("browser checks took %v", time.Since(start).Round(time.Millisecond))
}

type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string

	mu       sync.Mutex
	problems []string
}

// listen collects console errors, uncaught exceptions and error log
// entries (failed loads, CSP violations). It runs in the tab's event loop.
func (b *browser) listen(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			problem = "console.error: " + strings.Join(args, " ")
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = fmt.Sprintf("uncaught exception: %s (%s:%d)", d.Text, d.URL, d.LineNumber)
		if d.Exception != nil {
			problem += " " + d.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			problem = fmt.Sprintf("log %s error: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

// noProblems fails the test for every problem the page reported since the
// last call.
func (b *browser) noProblems(where string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", where, p)
	}
	b.problems = nil
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func evaluate[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// open loads path and waits until sel is visible.
func (b *browser) open(path, sel string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, "web-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.t.Logf("screenshot %s", path)
}

// domRow is an ASN table row as the browser shows it.
type domRow struct {
	ASN     uint32  `json:"asn"`
	Family  string  `json:"family"`
	Class   string  `json:"class"`
	Badge   string  `json:"badge"`
	Visible bool    `json:"visible"`
	Agents  float64 `json:"agents"`
}

const rowsJS = `Array.from(document.querySelectorAll('#asn-table tbody tr')).map(r => {
	const badge = r.querySelector('.badge');
	return {
		asn: Number(r.dataset.asn), family: r.dataset.family, class: r.dataset.class,
		badge: badge ? badge.textContent.trim() : '',
		visible: !r.hidden && !!badge && badge.getClientRects().length > 0,
		agents: Number(r.querySelector('td[data-v]:nth-child(6)').dataset.v),
	};
})`

func (b *browser) rows() []domRow { return evaluate[[]domRow](b, rowsJS) }

func badgeLabel(class string) string { return strings.ReplaceAll(class, "_", " ") }

func (b *browser) checkOverview(want []wantASN) {
	b.t.Helper()
	b.open("/?lang=en", "#asn-table")
	if !evaluate[bool](b, `document.documentElement.classList.contains('js')`) {
		b.t.Errorf("overview: the script did not run")
	}
	rows := b.rows()
	for _, w := range want {
		i := slices.IndexFunc(rows, func(r domRow) bool { return r.ASN == w.ASN && r.Family == w.Family })
		if i < 0 {
			b.t.Errorf("overview: no row for AS%d %s", w.ASN, w.Family)
			continue
		}
		if r := rows[i]; r.Class != w.Class || r.Badge != badgeLabel(w.Class) || !r.Visible {
			b.t.Errorf("overview: AS%d %s shows class %q, badge %q, visible %v; want %s badge visible", w.ASN, w.Family, r.Class, r.Badge, r.Visible, w.Class)
		}
	}
	if n := evaluate[int](b, `document.querySelectorAll('#country-table tbody tr').length`); n == 0 {
		b.t.Errorf("overview: the countries table is empty")
	}
	b.screenshot("overview-en")
	b.noProblems("overview")
}

// checkSort clicks the Agents column head twice and checks the rows are
// stably sorted ascending, then descending.
func (b *browser) checkSort() {
	b.t.Helper()
	before := b.rows()
	for _, dir := range []string{"ascending", "descending"} {
		b.do("sort by agents", chromedp.Click(chromedp.CSS(`#asn-table th[data-key="agents"] button.sort`)))
		got := b.rows()
		want := slices.Clone(before)
		slices.SortStableFunc(want, func(x, y domRow) int {
			if dir == "descending" {
				x, y = y, x
			}
			switch {
			case x.Agents < y.Agents:
				return -1
			case x.Agents > y.Agents:
				return 1
			}
			return 0
		})
		if !slices.Equal(order(got), order(want)) {
			b.t.Errorf("sort by agents %s: order %v; want %v", dir, order(got), order(want))
		}
		if aria := evaluate[string](b, `document.querySelector('#asn-table th[data-key="agents"]').getAttribute('aria-sort')`); aria != dir {
			b.t.Errorf("sort by agents: aria-sort %q; want %q", aria, dir)
		}
		before = got
	}
	b.noProblems("sorting")
}

func order(rows []domRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("AS%d/%s", r.ASN, r.Family))
	}
	return out
}

// checkFilter types an ASN into the filter box: only its rows stay.
func (b *browser) checkFilter(w wantASN) {
	b.t.Helper()
	needle := fmt.Sprintf("AS%d", w.ASN)
	b.do("type in the filter", chromedp.SendKeys(chromedp.CSS("#asn-filter"), needle))
	rows := b.rows()
	shown := 0
	for _, r := range rows {
		match := strings.HasPrefix(fmt.Sprint(r.ASN), fmt.Sprint(w.ASN))
		if r.Visible != match {
			b.t.Errorf("filter %q: AS%d %s visible %v; want %v", needle, r.ASN, r.Family, r.Visible, match)
		}
		if r.Visible {
			shown++
		}
	}
	if shown == 0 {
		b.t.Errorf("filter %q hides every row", needle)
	}
	count := evaluate[string](b, `document.getElementById('asn-count').textContent`)
	if !strings.HasPrefix(count, fmt.Sprintf("%d of %d", shown, len(rows))) {
		b.t.Errorf("filter %q: count says %q; want %d of %d", needle, count, shown, len(rows))
	}
	b.do("clear the filter", chromedp.Evaluate[chromedp.Void](
		`(() => { const i = document.getElementById('asn-filter'); i.value = ''; i.dispatchEvent(new Event('input')); })()`))
	for _, r := range b.rows() {
		if !r.Visible {
			b.t.Errorf("cleared filter: AS%d %s still hidden", r.ASN, r.Family)
		}
	}
	b.noProblems("filtering")
}

// domFamily is one family's class on an ASN page.
type domFamily struct {
	Family string `json:"family"`
	Badge  string `json:"badge"`
	Shown  bool   `json:"shown"`
}

func (b *browser) checkASNPages(want []wantASN) {
	b.t.Helper()
	byASN := map[uint32][]wantASN{}
	var asns []uint32
	for _, w := range want {
		if _, ok := byASN[w.ASN]; !ok {
			asns = append(asns, w.ASN)
		}
		byASN[w.ASN] = append(byASN[w.ASN], w)
	}
	for i, asn := range asns {
		path := fmt.Sprintf("/asn/AS%d?lang=en", asn)
		b.open(path, "#ports")
		h1 := evaluate[string](b, `document.querySelector('h1').textContent`)
		if !strings.Contains(h1, fmt.Sprintf("AS%d", asn)) {
			b.t.Errorf("%s: heading %q lacks the ASN", path, h1)
		}
		fams := evaluate[[]domFamily](b, `Array.from(document.querySelectorAll('.family-classes li')).map(li => {
			const badge = li.querySelector('.badge');
			return {family: li.querySelector('.fam').textContent.trim(), badge: badge ? badge.textContent.trim() : '',
				shown: !!badge && badge.getClientRects().length > 0};
		})`)
		for _, w := range byASN[asn] {
			label := map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}[w.Family]
			if !slices.Contains(fams, domFamily{Family: label, Badge: badgeLabel(w.Class), Shown: true}) {
				b.t.Errorf("%s: no visible %s badge for %s among %+v", path, w.Class, label, fams)
			}
		}
		if !evaluate[bool](b, `!!document.querySelector('#timeline-chart, #timeline .empty')`) {
			b.t.Errorf("%s: no timeline", path)
		}
		if i == 0 {
			b.screenshot("asn")
		}
		b.noProblems(path)
	}
}

func (b *browser) checkCheckPage() {
	b.t.Helper()
	b.open("/check?lang=en", "pre.cmd")
	cmds := evaluate[string](b, `Array.from(document.querySelectorAll('pre.cmd')).map(p => p.textContent).join('\n')`)
	if !strings.Contains(cmds, "op25b-agent check --refmta") {
		b.t.Errorf("/check: no op25b-agent check command in %q", cmds)
	}
	b.screenshot("check")
	b.noProblems("/check")
}

// checkResultPage opens the page of a one-off contribution whose round
// shows OP25B.
func (b *browser) checkResultPage(id string) {
	b.t.Helper()
	b.open("/result/"+id+"?lang=en", ".advice")
	if head := evaluate[string](b, `document.querySelector('.advice h3').textContent`); head != messagesOf(advice.OP25B) {
		b.t.Errorf("/result: advice %q; want the OP25B advice", head)
	}
	b.screenshot("result")
	b.noProblems("/result")
}

// messagesOf is a situation's English headline.
func messagesOf(s advice.Situation) string {
	head, _ := advice.Text(s, "en")
	return head
}

var japanese = regexp.MustCompile(`[\p{Hiragana}\p{Katakana}\p{Han}]`)

func (b *browser) checkJapanese() {
	b.t.Helper()
	b.open("/?lang=ja", "#asn-table")
	if lang := evaluate[string](b, `document.documentElement.lang`); lang != "ja" {
		b.t.Errorf("?lang=ja: <html lang=%q>", lang)
	}
	h1 := evaluate[string](b, `document.querySelector('h1').textContent`)
	if h1 != messages["ja"]["overview.title"] {
		b.t.Errorf("?lang=ja: heading %q; want %q", h1, messages["ja"]["overview.title"])
	}
	text := evaluate[string](b, `document.body.innerText`)
	if n := len(japanese.FindAllString(text, -1)); n < 200 {
		b.t.Errorf("?lang=ja: only %d Japanese characters on the page", n)
	}
	b.screenshot("overview-ja")
	// The cookie keeps the choice: the next page without ?lang= is Japanese.
	b.open("/check", "h1")
	if lang := evaluate[string](b, `document.documentElement.lang`); lang != "ja" {
		b.t.Errorf("/check after ?lang=ja: <html lang=%q>; the cookie did not stick", lang)
	}
	b.open("/?lang=en", "#asn-table")
	b.noProblems("Japanese")
}

// checkPhone loads each page at 390x844 and checks nothing is wider than
// the screen: wide tables scroll inside their wrapper instead.
func (b *browser) checkPhone(asn uint32) {
	b.t.Helper()
	b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulatePortrait))
	for _, p := range []struct{ path, sel, shot string }{
		{"/?lang=en", "#asn-table", "phone-overview"},
		{fmt.Sprintf("/asn/AS%d?lang=en", asn), "#ports", "phone-asn"},
		{"/check?lang=en", "h1", ""},
		{"/?lang=ja", "#asn-table", ""},
	} {
		b.open(p.path, p.sel)
		sizes := evaluate[[]int](b, `[document.documentElement.scrollWidth, document.documentElement.clientWidth]`)
		if len(sizes) != 2 || sizes[0] > sizes[1] {
			b.t.Errorf("phone %s: page is %v px wide in a %v px viewport", p.path, sizes[0], sizes[1])
		}
		if p.shot != "" {
			b.screenshot(p.shot)
		}
		b.noProblems("phone " + p.path)
	}
}
