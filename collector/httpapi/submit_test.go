package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/submit"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// fakeSubmitter records what it is given and answers err, or the fake's
// submission.
type fakeSubmitter struct {
	mu     sync.Mutex
	err    error
	client netip.Addr
	round  string
}

func (f *fakeSubmitter) Schedule() *pb.Schedule {
	return &pb.Schedule{Version: "v1", ReferenceMtas: []*pb.ReferenceMTA{{Id: refmta, Addresses: []string{"203.0.113.25"}}}}
}

func (f *fakeSubmitter) Submit(_ context.Context, client netip.Addr, req *pb.SubmitRoundRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.client, f.round = client, req.GetReport().GetRoundId()
	if f.err != nil {
		return "", f.err
	}
	return submission, nil
}

func post(h http.Handler, target, contentType string, body []byte, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var roundRequest = &pb.SubmitRoundRequest{Report: &pb.ProbeReport{RoundId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c00"}}

// TestSubmitRoute: a round posted as protobuf or protojson reaches the
// Submitter with the client's address, and the answer is 201 with the
// submission as stored and where its page is.
func TestSubmitRoute(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newHandler(&fake{}, Options{Submissions: sub})
	pbBody, _ := proto.Marshal(roundRequest)
	jsonBody, _ := protojson.Marshal(roundRequest)
	for _, c := range []struct {
		contentType string
		body        []byte
	}{{"application/x-protobuf", pbBody}, {"application/protobuf", pbBody}, {"application/json; charset=utf-8", jsonBody}} {
		w := post(h, "/api/v1/submissions", c.contentType, c.body)
		if w.Code != http.StatusCreated || w.Header().Get("Location") != "/api/v1/submissions/"+submission || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("POST %s = %d, Location %q\n%s", c.contentType, w.Code, w.Header().Get("Location"), w.Body)
		}
		var resp pb.SubmitRoundResponse
		if err := protojson.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer is not a SubmitRoundResponse: %v\n%s", err, w.Body)
		}
		if resp.SharePath != "/result/"+submission || resp.Submission.GetSubmissionId() != submission || len(resp.Submission.GetNetworks()) != 1 {
			t.Errorf("answer = %v; want the share path and the stored submission", &resp)
		}
		if sub.client != netip.MustParseAddr("192.0.2.1") || sub.round != roundRequest.Report.RoundId {
			t.Errorf("the submitter got %v from %s; want the round from the connection's 192.0.2.1", sub.round, sub.client)
		}
	}
	proxied := newHandler(&fake{}, Options{Submissions: sub, TrustProxy: true})
	post(proxied, "/api/v1/submissions", "application/x-protobuf", pbBody, "X-Forwarded-For", "198.51.100.7, 2001:db8::7")
	if sub.client != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("behind a trusted proxy the client is %s; want the last X-Forwarded-For entry 2001:db8::7", sub.client)
	}

	w := get(h, "/api/v1/submissions/"+submission)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"one_off":true`) {
		t.Errorf("GET the submission = %d\n%s", w.Code, w.Body)
	}
	if w := get(h, "/api/v1/submissions/019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c91"); w.Code != http.StatusNotFound {
		t.Errorf("GET an unknown submission = %d; want 404", w.Code)
	}
	w = get(h, "/api/v1/schedule")
	var sch pb.Schedule
	if w.Code != http.StatusOK || protojson.Unmarshal(w.Body.Bytes(), &sch) != nil || sch.GetReferenceMtas()[0].GetId() != refmta {
		t.Errorf("GET /api/v1/schedule = %d\n%s", w.Code, w.Body)
	}
}

// TestSubmitRouteErrors: each way a submission fails gets its status and
// a message that says what to do, as JSON.
func TestSubmitRouteErrors(t *testing.T) {
	pbBody, _ := proto.Marshal(roundRequest)
	cases := []struct {
		name        string
		err         error
		contentType string
		body        []byte
		status      int
		want        string
		retryAfter  string
	}{
		{"invalid", fmt.Errorf("%w: the report has no results", submit.ErrInvalid), "", nil, 400, "the report has no results", ""},
		{"replayed", &store.ReplayError{Earlier: submission, What: "round x was submitted before, as " + submission}, "", nil, 409, "run the check again", ""},
		{"rate", &submit.RateError{RetryAfter: 10 * time.Minute, What: "too many submissions from your address"}, "", nil, 429, "your address", "600"},
		{"storage", submit.ErrUnavailable, "", nil, 503, "try again", "60"},
		{"disabled", submit.ErrDisabled, "", nil, 404, "no one-off contributions", ""},
		{"form", nil, "application/x-www-form-urlencoded", []byte("a=b"), 415, "application/x-protobuf", ""},
		{"garbage", nil, "application/x-protobuf", []byte{0xff, 0xff, 0xff}, 400, "not an op25b.v1.SubmitRoundRequest", ""},
		{"bad json", nil, "application/json", []byte(`{"report": 7}`), 400, "not an op25b.v1.SubmitRoundRequest", ""},
		{"huge", nil, "application/x-protobuf", make([]byte, MaxSubmission+1), 413, "at most 1024 KiB", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHandler(&fake{}, Options{Submissions: &fakeSubmitter{err: c.err}})
			if c.contentType == "" {
				c.contentType, c.body = "application/x-protobuf", pbBody
			}
			w := post(h, "/api/v1/submissions", c.contentType, c.body)
			var e struct {
				Error struct{ Message string }
			}
			if w.Code != c.status || json.Unmarshal(w.Body.Bytes(), &e) != nil || !strings.Contains(e.Error.Message, c.want) {
				t.Errorf("POST = %d\n%s\nwant %d saying %q", w.Code, w.Body, c.status, c.want)
			}
			if got := w.Header().Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q; want %q", got, c.retryAfter)
			}
		})
	}
}

// TestSubmitRouteMethods: the submissions path takes POST (and its CORS
// preflight); the rest of the API stays read-only; a collector without
// submissions says so.
func TestSubmitRouteMethods(t *testing.T) {
	h := newHandler(&fake{}, Options{Submissions: &fakeSubmitter{}})
	if w := get(h, "/api/v1/submissions"); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET /api/v1/submissions = %d, Allow %q; want 405, POST", w.Code, w.Header().Get("Allow"))
	}
	w := do(h, request{method: http.MethodOptions, target: "/api/v1/submissions"})
	if w.Code != http.StatusNoContent || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("OPTIONS /api/v1/submissions = %d, methods %q", w.Code, w.Header().Get("Access-Control-Allow-Methods"))
	}
	if w := post(h, "/api/v1/asns", "application/json", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("POST /api/v1/asns = %d, Allow %q; want 405, GET", w.Code, w.Header().Get("Allow"))
	}
	none := newHandler(&fake{}, Options{})
	pbBody, _ := proto.Marshal(roundRequest)
	for _, w := range []*httptest.ResponseRecorder{get(none, "/api/v1/schedule"), post(none, "/api/v1/submissions", "application/x-protobuf", pbBody)} {
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "no one-off contributions") {
			t.Errorf("without submissions: %d\n%s; want 404 saying so", w.Code, w.Body)
		}
	}
}
