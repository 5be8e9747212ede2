// Package web is the collector's built-in web page: adoption of outbound
// port 25 blocking by country and ASN, one page per ASN (ports, timeline,
// changes, peers, evidence) with one of its prefixes' verdicts, and a page
// that tells a volunteer how to check their own line.
//
// Pages are rendered on the server with html/template; templates, CSS,
// JavaScript and icons are embedded, so the page needs no build step and
// works offline. JavaScript only enhances the rendered tables (sorting,
// filtering as you type); every page is complete without it. A strict
// Content-Security-Policy forbids inline script and style, so the SVG charts
// are drawn with attributes and classes only.
//
// Pages come in English and Japanese (messages.go): ?lang= chooses and a
// cookie remembers the choice, else Accept-Language decides.
//
// The numbers come from the query layer (collector/dataset), consumed
// through Querier; docs/dataset.md says how they are made.
package web

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Querier is the part of the query layer the pages read; *dataset.Dataset
// is one. Errors wrapping dataset.ErrNotFound become 404 pages,
// dataset.ErrInvalid 400 pages, anything else a 500 page.
type Querier interface {
	ListASNs(ctx context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error)
	GetASN(ctx context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error)
	GetPeers(ctx context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error)
	GetPrefixes(ctx context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error)
	ListCountries(ctx context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error)
	GetInfo(ctx context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error)
	GetSubmission(ctx context.Context, id string) (*pb.Submission, error)
}

// Options configure the pages. The zero value works.
type Options struct {
	// Now is the clock (default time.Now); windows such as "30d" end today.
	Now func() time.Time
	// Logger receives server-side failures (default slog.Default()).
	Logger *slog.Logger
	// SoftwareVersion is shown in the footer.
	SoftwareVersion string
	// Downloads is the release directory (make release's out/release):
	// served under /download/ and offered on the check page. Empty: the
	// page tells how to build the agent.
	Downloads string
	// Submissions: the collector takes one-off contributions, and the check
	// page tells volunteers to run check --submit.
	Submissions bool
	// PublicURL is the collector's web address as volunteers reach it
	// (https://observatory.example), which the check page tells them to
	// submit to. Empty: the address of each request.
	PublicURL string
}

// contentSecurityPolicy allows nothing but our own files: no inline script
// or style, no third-party fonts, scripts or frames.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// maxASNRows bounds the overview's ASN table; the export and the API serve
// more.
const maxASNRows = 5000

type server struct {
	q       Querier
	now     func() time.Time
	log     *slog.Logger
	version string
	dl      string
	public  string
	submit  bool
	pages   map[string]map[string]*template.Template // language, page
	static  *staticFiles
}

// New returns the web page's handler, to be served at the root of the
// collector's HTTP listener: "/", "/asn/{asn}", "/asn/{asn}/prefixes",
// "/check", "/result/{id}" (a one-off contribution) and "/static/".
func New(q Querier, opts Options) http.Handler {
	s := &server{q: q, now: opts.Now, log: opts.Logger, version: opts.SoftwareVersion, dl: opts.Downloads, public: strings.TrimSuffix(opts.PublicURL, "/"),
		submit: opts.Submissions, static: loadStatic()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.pages = parsePages()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /asn/{asn}", s.asn)
	mux.HandleFunc("GET /asn/{asn}/prefixes", s.prefixes)
	mux.HandleFunc("GET /check", s.check)
	mux.HandleFunc("GET /result/{id}", s.result)
	if s.dl != "" {
		mux.Handle("GET /download/", serveDownloads(s.dl))
	}
	mux.HandleFunc("GET /static/{file}", s.static.serve)
	mux.HandleFunc("GET /favicon.ico", s.static.favicon)
	mux.HandleFunc("/", s.notFound)
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

// base is what every page's layout needs.
type base struct {
	Lang   string
	Title  string
	Nav    string // the current section: "overview", "asn", "check"
	CSS    string
	JS     string
	Icon   string
	SelfEN string // this page in English
	SelfJA string // this page in Japanese
	Footer footer
	sticky bool // the language was chosen (query or cookie), so links carry it
}

// Link returns the URL of path with the query kv (pairs of name and value,
// empty values left out), keeping an explicitly chosen language.
func (b base) Link(path string, kv ...string) string {
	if b.sticky {
		kv = append(kv, "lang", b.Lang)
	}
	return buildURL(path, kv...)
}

// Sticky reports whether forms must carry the language as a hidden field.
func (b base) Sticky() bool { return b.sticky }

type footer struct {
	Licence     string
	LicenceURL  string
	Schema      string
	RefreshedAt string
	WindowsAt   string
	Software    string
	ExportCSV   string
	ExportDay   string
	// Replica says that the page was read from a replica, and how far
	// behind the primary it is.
	Replica string
}

func (s *server) base(w http.ResponseWriter, r *http.Request, nav string, info *pb.GetInfoResponse) base {
	lang, sticky := chooseLang(w, r)
	b := base{
		Lang:   lang,
		Nav:    nav,
		CSS:    s.static.url("app.css"),
		JS:     s.static.url("app.js"),
		Icon:   s.static.url("icon.svg"),
		SelfEN: withQuery(r.URL, "lang", "en"),
		SelfJA: withQuery(r.URL, "lang", "ja"),
		sticky: sticky,
	}
	b.Footer.Software = s.version
	b.Footer.Licence = dataset.Licence
	if info != nil {
		b.Footer.Schema = info.GetSchemaVersion()
		if t := info.GetRefreshedAt(); t != nil && !t.AsTime().IsZero() {
			b.Footer.RefreshedAt = t.AsTime().UTC().Format("2006-01-02 15:04 UTC")
		}
		if t := info.GetWindowsRefreshedAt(); t != nil && !t.AsTime().IsZero() {
			b.Footer.WindowsAt = t.AsTime().UTC().Format("2006-01-02 15:04 UTC")
		}
		if l := info.GetLicence(); l != "" {
			b.Footer.Licence = l
		}
		if b.Footer.Software == "" {
			b.Footer.Software = info.GetSoftwareVersion()
		}
		switch {
		case info.GetReadFromReplica() && info.GetReplicaLag() != nil:
			b.Footer.Replica = translatorf(lang)("footer.replica", info.GetReplicaLag().AsDuration().Round(100*time.Millisecond).String())
		case info.GetReadFromReplica():
			b.Footer.Replica = translator(lang)("footer.replica.unknown")
		}
	}
	if b.Footer.Licence == "CC-BY-4.0" {
		b.Footer.Licence, b.Footer.LicenceURL = "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"
	}
	// The export link names yesterday, the last complete UTC day.
	day := dataset.Today(s.now()).Add(-dataset.Day)
	b.Footer.ExportDay = day.Format(time.DateOnly)
	b.Footer.ExportCSV = buildURL("/api/v1/export", "start", b.Footer.ExportDay, "end", day.Add(dataset.Day).Format(time.DateOnly), "format", "csv")
	return b
}

// render executes page into a buffer first, so that a template failure
// becomes a clean 500 page rather than half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, lang, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages[lang][page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("web: render page", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Language, Cookie")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorPage struct {
	base
	Status  int
	Heading string
	Message string
	ASN     string
}

// fail renders the error page that err calls for.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, dataset.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, "")
	case errors.Is(err, dataset.ErrInvalid):
		s.errorPage(w, r, http.StatusBadRequest, invalidMessage(err))
	case errors.Is(err, context.Canceled):
		// The visitor left; there is nobody to show a page to.
		w.WriteHeader(499)
	default:
		s.log.Error("web: query failed", "path", r.URL.Path, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "")
	}
}

// invalidMessage is what the visitor must change, without the sentinel's
// generic prefix.
func invalidMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, dataset.ErrInvalid.Error()+": "); i >= 0 {
		msg = msg[i+len(dataset.ErrInvalid.Error())+2:]
	}
	return msg
}

func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, message string) {
	p := errorPage{base: s.base(w, r, "", nil), Status: status, Message: message}
	t := translator(p.Lang)
	switch status {
	case http.StatusNotFound:
		p.Title, p.Heading = t("error.404.title"), t("error.404.heading")
	case http.StatusBadRequest:
		p.Title, p.Heading = t("error.400.title"), t("error.400.heading")
	default:
		p.Title, p.Heading = t("error.500.title"), t("error.500.heading")
	}
	s.render(w, r, status, p.Lang, "error", p)
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusNotFound, "")
}

// asnNotFound is the 404 page of an ASN we have no measurements of.
func (s *server) asnNotFound(w http.ResponseWriter, r *http.Request, asn uint32) {
	p := errorPage{base: s.base(w, r, "", nil), Status: http.StatusNotFound, ASN: asnLabel(asn)}
	p.Title = translator(p.Lang)("error.404.title")
	p.Heading = translatorf(p.Lang)("error.404.asn.heading", p.ASN)
	s.render(w, r, http.StatusNotFound, p.Lang, "error", p)
}

func (s *server) info(ctx context.Context) (*pb.GetInfoResponse, error) {
	return s.q.GetInfo(ctx, &pb.GetInfoRequest{})
}

// check is the volunteer's page; it is static text, so a failing query
// layer only costs the footer its dataset details.
func (s *server) check(w http.ResponseWriter, r *http.Request) {
	info, err := s.info(r.Context())
	if err != nil {
		s.log.Warn("web: info for the check page", "err", err)
		info = nil
	}
	p := checkPage{base: s.base(w, r, "check", info), Submit: s.submit, Base: s.public}
	if p.Base == "" {
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		p.Base = scheme + r.Host
	}
	p.Title = translator(p.Lang)("check.title")
	if s.dl != "" {
		if p.Downloads, err = readDownloads(s.dl, r.UserAgent()); err != nil {
			s.log.Error("web: the release directory", "dir", s.dl, "err", err)
		}
	}
	s.render(w, r, http.StatusOK, p.Lang, "check", &p)
}

// checkPage is the check page's data: the release files, when the
// collector serves them.
type checkPage struct {
	base
	Downloads *downloads
	// Submit: the collector takes check --submit, at Base, its web
	// address.
	Submit bool
	Base   string
}
