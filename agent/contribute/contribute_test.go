package contribute

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestParse(t *testing.T) {
	for raw, want := range map[string]string{
		"https://observatory.example":         "https://observatory.example",
		"https://observatory.example/":        "https://observatory.example",
		" http://127.0.0.1:9090/op25b/ ":      "http://127.0.0.1:9090/op25b",
		"https://[2001:db8::1]:8443/":         "https://[2001:db8::1]:8443",
		"observatory.example":                 "",
		"ftp://observatory.example":           "",
		"https://observatory.example/?x=1":    "",
		"https://user:pw@observatory.example": "",
	} {
		c, err := Parse(raw)
		switch {
		case want == "" && err == nil:
			t.Errorf("Parse(%q) = %s; want an error", raw, c)
		case want != "" && (err != nil || c.String() != want):
			t.Errorf("Parse(%q) = %v, %v; want %s", raw, c, err, want)
		}
	}
	for raw, insecure := range map[string]bool{
		"https://observatory.example": false, "http://observatory.example": true, "http://192.0.2.1": true,
		"http://127.0.0.1:9090": false, "http://[::1]:9090": false, "http://localhost:9090": false,
	} {
		if c, _ := Parse(raw); c.Insecure() != insecure {
			t.Errorf("%s: Insecure() = %v; want %v", raw, c.Insecure(), insecure)
		}
	}
}

// TestSubmit: the round goes out as protobuf to /api/v1/submissions under
// the collector's path, and the collector's own words come back on a
// refusal, with Retry-After.
func TestSubmit(t *testing.T) {
	var got op25bv1.SubmitRoundRequest
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/op25b/api/v1/schedule":
			b, _ := protojson.Marshal(&op25bv1.Schedule{ReferenceMtas: []*op25bv1.ReferenceMTA{{Id: "refmta-a"}}})
			w.Write(b)
		case r.Method == http.MethodPost && r.URL.Path == "/op25b/api/v1/submissions" && r.Header.Get("Content-Type") == "application/x-protobuf":
			b, _ := io.ReadAll(r.Body)
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Errorf("the body is not a SubmitRoundRequest: %v", err)
			}
			if status != http.StatusCreated {
				w.Header().Set("Retry-After", "600")
				w.WriteHeader(status)
				io.WriteString(w, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"too many submissions from your address"}}`)
				return
			}
			w.WriteHeader(http.StatusCreated)
			b, _ = protojson.Marshal(&op25bv1.SubmitRoundResponse{SharePath: "/result/019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c99",
				Submission: &op25bv1.Submission{SubmissionId: "019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c99"}})
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := Parse(srv.URL + "/op25b/")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if s, err := c.Schedule(ctx); err != nil || s.GetReferenceMtas()[0].GetId() != "refmta-a" {
		t.Fatalf("Schedule = %v, %v", s, err)
	}
	resp, err := c.Submit(ctx, &op25bv1.ProbeReport{RoundId: "r1"})
	if err != nil || got.GetReport().GetRoundId() != "r1" {
		t.Fatalf("Submit = %v, %v; the collector got %v", resp, err, &got)
	}
	if want := srv.URL + "/op25b/result/019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c99"; c.ShareURL(resp) != want {
		t.Errorf("ShareURL = %s; want %s", c.ShareURL(resp), want)
	}
	status = http.StatusTooManyRequests
	_, err = c.Submit(ctx, &op25bv1.ProbeReport{RoundId: "r2"})
	if err == nil || !strings.Contains(err.Error(), "429 Too Many Requests: too many submissions from your address (retry after 600 s)") {
		t.Errorf("a refused submission: %v; want the collector's message and Retry-After", err)
	}
	other, _ := Parse(srv.URL + "/elsewhere")
	if _, err := other.Schedule(ctx); err == nil || !strings.Contains(err.Error(), "404 Not Found: is this the collector's web address?") {
		t.Errorf("a path that is not a collector: %v; want 404", err)
	}
}
