// Package datasetclient is a Go client of the collector's dataset API
// (/api/v1): the adoption of OP25B per ASN, timelines and policy changes,
// peer benchmarks, the verdicts of an ASN's prefixes, country rollups, and
// the export of public raw results.
//
// Responses are the op25b.v1 messages, decoded with protojson and unknown
// fields discarded, so that a newer collector does not break an older
// client. An error the collector reports comes back as an *APIError.
//
//	c, err := datasetclient.New("http://127.0.0.1:9090")
//	for s, err := range c.AllASNs(ctx, datasetclient.Query{Country: "JP"}) {
//		...
//	}
package datasetclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// DefaultTimeout bounds one query, and for an export the wait for the
// response and between two reads of its body.
const DefaultTimeout = time.Minute

// maxResponse bounds the body of a query response read into memory: the
// largest page the collector serves is a few megabytes.
const maxResponse = 64 << 20

// Client calls one collector's dataset API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	timeout   time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc, which should
// have no Timeout of its own (exports stream for as long as they need).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header, "op25b/dev" by default.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTimeout replaces DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a client of the collector whose HTTP address is baseURL,
// such as "http://127.0.0.1:9090" or "https://observatory.example/".
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("collector URL %q: want an http(s) URL such as http://127.0.0.1:9090", baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, userAgent: "op25b/dev", timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// BaseURL returns the collector's address the client was made with.
func (c *Client) BaseURL() string { return c.base.String() }

// Query selects what a call covers. A zero field means any, or for
// Window the collector's default window (30 days ending today, UTC). Each
// method reads only the fields its endpoint accepts.
type Query struct {
	// Country is an ISO 3166-1 alpha-2 code such as "JP".
	Country string
	// ASN narrows ListPolicyChanges.
	ASN uint32
	// Class narrows ListASNs.
	Class  pb.PolicyClass
	Family pb.AddressFamily
	// Window is written as the API reads it: "30d" (the last 30 UTC days,
	// today included) or "2026-03-01/2026-04-01" (the end excluded).
	Window string
	// PageSize and PageToken page through lists; the All* iterators set
	// PageToken themselves.
	PageSize  uint32
	PageToken string
}

// Param names of the API.
const (
	pCountry = "country"
	pASN     = "asn"
	pClass   = "class"
	pFamily  = "family"
	pWindow  = "window"
	pPage    = "page" // page_size and page_token
)

func (q Query) values(params ...string) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	for _, p := range params {
		switch p {
		case pCountry:
			set("country", q.Country)
		case pASN:
			if q.ASN != 0 {
				set("asn", strconv.FormatUint(uint64(q.ASN), 10))
			}
		case pClass:
			if q.Class != pb.PolicyClass_POLICY_CLASS_UNSPECIFIED {
				set("class", dataset.ClassName(q.Class))
			}
		case pFamily:
			set("family", dataset.FamilyName(q.Family))
		case pWindow:
			set("window", q.Window)
		case pPage:
			if q.PageSize != 0 {
				set("page_size", strconv.FormatUint(uint64(q.PageSize), 10))
			}
			set("page_token", q.PageToken)
		}
	}
	return v
}

// Info says which software and schema serve the data, its licence, how
// fresh it is and the collector's limits.
func (c *Client) Info(ctx context.Context) (*pb.GetInfoResponse, error) {
	out := &pb.GetInfoResponse{}
	return out, c.get(ctx, "info", nil, out)
}

// ListASNs returns one page of per-ASN summaries (Country, Class, Family,
// Window, PageSize, PageToken).
func (c *Client) ListASNs(ctx context.Context, q Query) (*pb.ListASNsResponse, error) {
	out := &pb.ListASNsResponse{}
	return out, c.get(ctx, "asns", q.values(pCountry, pClass, pFamily, pWindow, pPage), out)
}

// AllASNs yields every summary ListASNs selects, following the pages; it
// stops after the first error, which it yields.
func (c *Client) AllASNs(ctx context.Context, q Query) iter.Seq2[*pb.ASNSummary, error] {
	return all(func(token string) ([]*pb.ASNSummary, string, error) {
		q.PageToken = token
		r, err := c.ListASNs(ctx, q)
		return r.GetAsns(), r.GetNextPageToken(), err
	}, q.PageToken)
}

// GetASN returns the summaries, timeline, changes and evidence of one ASN
// (Family, Window).
func (c *Client) GetASN(ctx context.Context, asn uint32, q Query) (*pb.GetASNResponse, error) {
	out := &pb.GetASNResponse{}
	return out, c.get(ctx, "asns/"+strconv.FormatUint(uint64(asn), 10), q.values(pFamily, pWindow), out)
}

// GetPeers ranks an ASN among those of its country (Family, Window).
func (c *Client) GetPeers(ctx context.Context, asn uint32, q Query) (*pb.GetPeersResponse, error) {
	out := &pb.GetPeersResponse{}
	return out, c.get(ctx, "asns/"+strconv.FormatUint(uint64(asn), 10)+"/peers", q.values(pFamily, pWindow), out)
}

// GetPrefixes returns one page of the /24 and /48 prefixes of one ASN with
// their verdicts over the window and day by day (Family, Window, PageSize,
// PageToken).
func (c *Client) GetPrefixes(ctx context.Context, asn uint32, q Query) (*pb.GetPrefixesResponse, error) {
	out := &pb.GetPrefixesResponse{}
	return out, c.get(ctx, "asns/"+strconv.FormatUint(uint64(asn), 10)+"/prefixes", q.values(pFamily, pWindow, pPage), out)
}

// AllPrefixes yields every prefix GetPrefixes selects, following the
// pages; it stops after the first error, which it yields.
func (c *Client) AllPrefixes(ctx context.Context, asn uint32, q Query) iter.Seq2[*pb.PrefixSummary, error] {
	return all(func(token string) ([]*pb.PrefixSummary, string, error) {
		q.PageToken = token
		r, err := c.GetPrefixes(ctx, asn, q)
		return r.GetPrefixes(), r.GetNextPageToken(), err
	}, q.PageToken)
}

// ListPolicyChanges returns one page of changes of class (Country, ASN,
// Window, PageSize, PageToken).
func (c *Client) ListPolicyChanges(ctx context.Context, q Query) (*pb.ListPolicyChangesResponse, error) {
	out := &pb.ListPolicyChangesResponse{}
	return out, c.get(ctx, "changes", q.values(pCountry, pASN, pWindow, pPage), out)
}

// AllPolicyChanges yields every change ListPolicyChanges selects,
// following the pages; it stops after the first error, which it yields.
func (c *Client) AllPolicyChanges(ctx context.Context, q Query) iter.Seq2[*pb.PolicyChange, error] {
	return all(func(token string) ([]*pb.PolicyChange, string, error) {
		q.PageToken = token
		r, err := c.ListPolicyChanges(ctx, q)
		return r.GetChanges(), r.GetNextPageToken(), err
	}, q.PageToken)
}

// ListCountries returns the rollup per country (Family, Window).
func (c *Client) ListCountries(ctx context.Context, q Query) (*pb.ListCountriesResponse, error) {
	out := &pb.ListCountriesResponse{}
	return out, c.get(ctx, "countries", q.values(pFamily, pWindow), out)
}

// all yields the items of every page, fetching the next page only when
// the consumer wants more.
func all[T any](fetch func(token string) ([]T, string, error), token string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		seen := map[string]bool{}
		for {
			items, next, err := fetch(token)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			if seen[next] {
				var zero T
				yield(zero, fmt.Errorf("the collector gave page token %q twice", next))
				return
			}
			seen[next], token = true, next
		}
	}
}

// get decodes the JSON answer to GET /api/v1/<path>?<query> into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, out proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.do(ctx, path, query, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("reading the answer to %s: %w", resp.Request.URL.Path, err)
	}
	if len(body) > maxResponse {
		return fmt.Errorf("the answer to %s is larger than %d MB", resp.Request.URL.Path, maxResponse>>20)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding the answer to %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// do sends GET /api/v1/<path>?<query> and returns the response if its
// status is 200; otherwise the collector's error as an *APIError.
func (c *Client) do(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	return c.doHeaders(ctx, path, query, accept, nil)
}

// doHeaders is do with more request headers (those with empty values are
// left out).
func (c *Client) doHeaders(ctx context.Context, path string, query url.Values, accept string, headers map[string]string) (*http.Response, error) {
	u := c.base.JoinPath("api/v1", path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", accept)
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// APIError is an error the collector answered with.
type APIError struct {
	// HTTPStatus is the status of the response, such as 400.
	HTTPStatus int
	// Status is the API's name of the error, such as "INVALID_ARGUMENT"
	// or "NOT_FOUND".
	Status string
	// Message is the collector's explanation.
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("collector said %d %s: %s", e.HTTPStatus, e.Status, e.Message)
}

// decodeError reads the API's error body {"error": {"code", "status",
// "message"}}; a body in another shape (a proxy's page, a collector
// without the dataset API) is quoted, shortened.
func decodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{HTTPStatus: resp.StatusCode}
	var doc struct {
		Error *struct {
			Code    int    `json:"code"`
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &doc) == nil && doc.Error != nil && doc.Error.Message != "" {
		e.Status, e.Message = doc.Error.Status, doc.Error.Message
	} else {
		msg := strings.Join(strings.Fields(string(body)), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			msg = "(empty body)"
		}
		e.Message = fmt.Sprintf("%s (not an API error: is %s the collector's HTTP address?)", msg, resp.Request.URL.Host)
	}
	if e.Status == "" {
		e.Status = strings.ToUpper(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
	}
	return e
}

// IsNotFound reports whether err is the collector saying 404: the ASN or
// resource asked for is not in the dataset.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.HTTPStatus == http.StatusNotFound
}
