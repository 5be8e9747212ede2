// Package httpapi is the public HTTP dataset API of the collector, under
// /api/v1: the per-ASN adoption of OP25B, peer benchmarks, the verdicts of
// an ASN's prefixes, policy changes (also as an Atom feed, atom.go),
// country rollups and the export of raw public results as CSV, NDJSON or
// Parquet. It is open to any origin (CORS) and documented by the OpenAPI
// document it serves at /api/v1/openapi.json; docs/dataset.md is the
// researchers' guide. It only reads, but for one-off contributions
// (submit.go): POST /api/v1/submissions takes the round of an `op25b-agent
// check --submit`. It also makes the front of the collector's
// HTTP listener (front.go): the server's timeouts and the rate limit per
// client that every route, the web page's too, is served behind.
//
// JSON bodies are the op25b.v1 dataset messages in protojson; the numbers
// come from the query layer (collector/dataset) through Querier.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/stream"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Querier answers dataset queries; *dataset.Dataset is one. Errors wrapping
// dataset.ErrInvalid or dataset.ErrNotFound are the caller's; any other is
// the server's.
type Querier interface {
	ListASNs(context.Context, *pb.ListASNsRequest) (*pb.ListASNsResponse, error)
	GetASN(context.Context, *pb.GetASNRequest) (*pb.GetASNResponse, error)
	GetPeers(context.Context, *pb.GetPeersRequest) (*pb.GetPeersResponse, error)
	ListPolicyChanges(context.Context, *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error)
	ListCountries(context.Context, *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error)
	GetPrefixes(context.Context, *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error)
	GetInfo(context.Context, *pb.GetInfoRequest) (*pb.GetInfoResponse, error)
	// ExportResults calls emit with batches of results in (measured_at,
	// result_id) order; an error from emit stops the export and is returned.
	ExportResults(ctx context.Context, req *pb.ExportResultsRequest, emit func([]*pb.PublicResult) error) error
	// GetSubmission returns a one-off contribution by its id.
	GetSubmission(ctx context.Context, id string) (*pb.Submission, error)
	// ChangeEvents lists the log of policy changes (the Atom feed).
	ChangeEvents(ctx context.Context, f dataset.EventFilter) ([]dataset.ChangeEvent, error)
}

// Options tune the API. The zero value of a field means its default.
type Options struct {
	// Now is the clock for rolling windows (time.Now).
	Now func() time.Time
	// MaxConcurrentExports bounds the exports running at once (4); more are
	// refused with 429.
	MaxConcurrentExports int
	// Logger receives server-side failures (discarded when nil).
	Logger *slog.Logger
	// Submissions takes one-off contributions; nil: the collector takes
	// none, and /api/v1/schedule and POST /api/v1/submissions answer 404.
	Submissions Submitter
	// TrustProxy takes a submitter's address from the last
	// X-Forwarded-For entry (LimitOptions.TrustProxy), and the scheme of
	// the feed's links from X-Forwarded-Proto.
	TrustProxy bool
	// PublicURL is the collector's web address, which the Atom feed links
	// to (empty: the address of each request).
	PublicURL string
	// Stream serves /api/v1/stream (nil: 404).
	Stream *stream.Broker
}

const (
	prefix       = "/api/v1"
	cacheControl = "public, max-age=60"
	jsonType     = "application/json; charset=utf-8"
)

type server struct {
	q          Querier
	sub        Submitter
	trustProxy bool
	publicURL  string
	now        func() time.Time
	exports    chan struct{}
	broker     *stream.Broker
	log        *slog.Logger
	mux        *http.ServeMux
}

// New returns the handler of the dataset API. Mount it at "/api/" (or at
// the root): it answers every path it is given, with 404 outside /api/v1.
func New(q Querier, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConcurrentExports <= 0 {
		opts.MaxConcurrentExports = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{
		q:          q,
		sub:        opts.Submissions,
		trustProxy: opts.TrustProxy,
		publicURL:  strings.TrimSuffix(opts.PublicURL, "/"),
		now:        opts.Now,
		exports:    make(chan struct{}, opts.MaxConcurrentExports),
		broker:     opts.Stream,
		log:        opts.Logger,
		mux:        http.NewServeMux(),
	}
	if s.sub == nil {
		s.sub = noSubmissions{}
	}
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.handle(rt))
	}
	s.mux.HandleFunc("/", s.fallback)
	return s
}

// route is one endpoint: its ServeMux pattern, the query parameters it
// accepts (any other is refused) and what it does. The OpenAPI test checks
// the document against this table.
type route struct {
	pattern string
	params  []string
	serve   func(w http.ResponseWriter, r *http.Request, q *query) error
}

func (s *server) routes() []route {
	return []route{
		{"GET " + prefix + "/info", nil, answerJSON(s.info)},
		{"GET " + prefix + "/asns", []string{"country", "class", "family", "window", "page_size", "page_token"}, answerJSON(s.listASNs)},
		{"GET " + prefix + "/asns/{asn}", []string{"family", "window"}, answerJSON(s.getASN)},
		{"GET " + prefix + "/asns/{asn}/peers", []string{"family", "window"}, answerJSON(s.getPeers)},
		{"GET " + prefix + "/asns/{asn}/prefixes", []string{"family", "window", "page_size", "page_token"}, answerJSON(s.getPrefixes)},
		{"GET " + prefix + "/changes", []string{"country", "asn", "window", "page_size", "page_token"}, answerJSON(s.listChanges)},
		{"GET " + prefix + "/changes.atom", []string{"country", "asn"}, s.changesAtom},
		{"GET " + prefix + "/countries", []string{"family", "window"}, answerJSON(s.listCountries)},
		{"GET " + prefix + "/export", []string{"start", "end", "asn", "country", "family", "format"}, s.export},
		{"GET " + prefix + "/openapi.json", nil, serveOpenAPI},
		{"GET " + prefix + "/schedule", nil, answerJSON(s.schedule)},
		{"POST " + prefix + "/submissions", nil, s.postSubmission},
		{"GET " + prefix + "/submissions/{id}", nil, answerJSON(s.getSubmission)},
		{"GET " + prefix + "/stream", []string{"asn", "country", "port", "verdict"}, s.stream},
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setAPIHeaders(w.Header())
	s.mux.ServeHTTP(w, r)
}

// setAPIHeaders sets the headers of every answer of the API: any origin
// may read it, errors and rate limits included.
func setAPIHeaders(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Content-Disposition, Retry-After")
	h.Set("X-Content-Type-Options", "nosniff")
}

// fallback answers what no route matched: CORS preflights of the routes,
// 405 for other methods on them, 404 for anything else.
func (s *server) fallback(w http.ResponseWriter, r *http.Request) {
	allow := s.methods(r)
	if allow == "" {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no such path %s; see %s/openapi.json", dataset.Quote(r.URL.Path), prefix))
		return
	}
	if r.Method == http.MethodOptions {
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", allow)
		h.Set("Access-Control-Allow-Headers", "Accept, Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("method %s: this path takes %s", r.Method, allow))
}

// methods returns the methods r's path is served with, OPTIONS included,
// or "" when no route serves it.
func (s *server) methods(r *http.Request) string {
	served := func(method string) bool {
		_, p := s.mux.Handler(&http.Request{Method: method, URL: r.URL, Host: r.Host})
		return p != "/"
	}
	switch {
	case served(http.MethodGet):
		return "GET, HEAD, OPTIONS"
	case served(http.MethodPost):
		return "POST, OPTIONS"
	}
	return ""
}

// handle checks the query parameters of r against rt and serves it.
func (s *server) handle(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.RawQuery, rt.params, s.now())
		if err == nil {
			err = rt.serve(w, r, q)
		}
		if err != nil {
			s.fail(w, r, rt.pattern, err)
		}
	})
}

// fail answers r with the error err, which nothing was written before.
func (s *server) fail(w http.ResponseWriter, r *http.Request, pattern string, err error) {
	if submitFailure(w, err) {
		return
	}
	switch {
	case errors.Is(err, dataset.ErrInvalid):
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
	case errors.Is(err, dataset.ErrNotFound):
		writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.Debug("dataset API: request canceled", "route", pattern, "err", err)
	default:
		writeError(w, http.StatusInternalServerError, "INTERNAL", dataset.LogFailure(s.log, pattern, err))
	}
}

func writeError(w http.ResponseWriter, code int, status, message string) {
	type body struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{code, status, message}})
	h := w.Header()
	h.Del("Content-Disposition")
	h.Set("Content-Type", jsonType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// answerJSON adapts a query that answers with a message to a route.
func answerJSON(answer func(r *http.Request, q *query) (proto.Message, error)) func(http.ResponseWriter, *http.Request, *query) error {
	return func(w http.ResponseWriter, r *http.Request, q *query) error {
		m, err := answer(r, q)
		if err != nil {
			return err
		}
		b, err := jsonOptions.Marshal(m)
		if err != nil {
			return fmt.Errorf("httpapi: encode %T: %w", m, err)
		}
		h := w.Header()
		h.Set("Content-Type", jsonType)
		h.Set("Cache-Control", cacheControl)
		h.Set("Content-Length", strconv.Itoa(len(b)+1))
		w.Write(append(b, '\n'))
		return nil
	}
}

func (s *server) info(r *http.Request, q *query) (proto.Message, error) {
	return s.q.GetInfo(r.Context(), &pb.GetInfoRequest{})
}

func (s *server) listASNs(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.ListASNsRequest{
		Country:     q.country(),
		PolicyClass: q.class(),
		Family:      q.family(),
		Window:      q.window(),
		PageSize:    q.pageSize(),
		PageToken:   q.v.Get("page_token"),
	}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.ListASNs(r.Context(), req)
}

func (s *server) getASN(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.GetASNRequest{Asn: q.pathASN(r), Family: q.family(), Window: q.window()}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.GetASN(r.Context(), req)
}

func (s *server) getPeers(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.GetPeersRequest{Asn: q.pathASN(r), Family: q.family(), Window: q.window()}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.GetPeers(r.Context(), req)
}

func (s *server) getPrefixes(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.GetPrefixesRequest{Asn: q.pathASN(r), Family: q.family(), Window: q.window(), PageSize: q.pageSize(),
		PageToken: q.v.Get("page_token")}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.GetPrefixes(r.Context(), req)
}

func (s *server) listChanges(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.ListPolicyChangesRequest{
		Country:   q.country(),
		Asn:       q.asn(),
		Window:    q.window(),
		PageSize:  q.pageSize(),
		PageToken: q.v.Get("page_token"),
	}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.ListPolicyChanges(r.Context(), req)
}

func (s *server) listCountries(r *http.Request, q *query) (proto.Message, error) {
	req := &pb.ListCountriesRequest{Family: q.family(), Window: q.window()}
	if q.err != nil {
		return nil, q.err
	}
	return s.q.ListCountries(r.Context(), req)
}

// query reads the parameters of one request, keeping the first error so
// that a handler checks once.
type query struct {
	v   url.Values
	now time.Time
	err error
}

// parseQuery refuses malformed, unknown and repeated parameters: a typo
// must not silently widen a query.
func parseQuery(raw string, allowed []string, now time.Time) (*query, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed query string", dataset.ErrInvalid)
	}
	for _, k := range slices.Sorted(maps.Keys(v)) {
		switch {
		case !slices.Contains(allowed, k):
			return nil, fmt.Errorf("%w: unknown query parameter %s (this path takes %s)", dataset.ErrInvalid, dataset.Quote(k), paramList(allowed))
		case len(v[k]) > 1:
			return nil, fmt.Errorf("%w: query parameter %s given %d times", dataset.ErrInvalid, dataset.Quote(k), len(v[k]))
		}
	}
	return &query{v: v, now: now}, nil
}

func paramList(params []string) string {
	if len(params) == 0 {
		return "none"
	}
	return strings.Join(params, ", ")
}

func (q *query) keep(err error) {
	if q.err == nil {
		q.err = err
	}
}

func (q *query) family() pb.AddressFamily {
	f, err := dataset.ParseFamily(q.v.Get("family"))
	q.keep(err)
	return f
}

func (q *query) class() pb.PolicyClass {
	c, err := dataset.ParseClass(q.v.Get("class"))
	q.keep(err)
	return c
}

func (q *query) window() *pb.TimeRange {
	w, err := dataset.ParseWindow(q.v.Get("window"), q.now)
	q.keep(err)
	return w
}

// asn reads the optional asn parameter; 0 is any.
func (q *query) asn() uint32 {
	s := q.v.Get("asn")
	if s == "" {
		return 0
	}
	n, err := dataset.ParseASN(s)
	q.keep(err)
	return n
}

func (q *query) pathASN(r *http.Request) uint32 {
	n, err := dataset.ParseASN(r.PathValue("asn"))
	q.keep(err)
	return n
}

// country reads an ISO 3166-1 alpha-2 code, in any case; "" is any.
func (q *query) country() string {
	c, err := dataset.ParseCountry(q.v.Get("country"))
	q.keep(err)
	return c
}

func (q *query) pageSize() uint32 {
	s := q.v.Get("page_size")
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		q.keep(fmt.Errorf("%w: page_size %s: want a number of items such as 100", dataset.ErrInvalid, dataset.Quote(s)))
	}
	return uint32(n)
}

// time reads a required time parameter.
func (q *query) time(name string) time.Time {
	s := q.v.Get(name)
	if s == "" {
		q.keep(fmt.Errorf("%w: %s is required (2026-03-01 or 2026-03-01T12:00:00Z)", dataset.ErrInvalid, name))
		return time.Time{}
	}
	t, err := dataset.ParseTime(s)
	q.keep(err)
	return t
}
