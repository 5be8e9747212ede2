// Package contribute is the agent's side of one-off contributions
// (`op25b-agent check --submit URL`): it fetches the plan a check follows
// from a collector's web address and uploads the round to it, over HTTP,
// without enrolling. The collector's side is collector/submit; the
// messages are op25b.v1's SubmitRoundRequest and SubmitRoundResponse.
package contribute

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/internal/clip"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Timeout bounds each request to the collector.
const Timeout = 30 * time.Second

// maxAnswer bounds what the agent reads of an answer.
const maxAnswer = 1 << 20

// Collector is a collector's web address.
type Collector struct {
	base   string // scheme://host[:port][/path], no trailing slash
	client *http.Client
}

// Parse checks a collector's address as a volunteer types it: an http or
// https URL with a host, without query or fragment.
func Parse(raw string) (*Collector, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("--submit %q: want the collector's web address, such as https://observatory.example", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Collector{base: u.String(), client: &http.Client{Timeout: Timeout}}, nil
}

// String is the collector's address.
func (c *Collector) String() string { return c.base }

// Insecure reports whether the address is plain http to another machine,
// where the reference MTAs' keys could be replaced on the way.
func (c *Collector) Insecure() bool {
	u, _ := url.Parse(c.base)
	if u.Scheme == "https" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Schedule fetches the plan a check follows: the collector's reference
// MTAs, with their keys, the ports and the probe timeout.
func (c *Collector) Schedule(ctx context.Context) (*op25bv1.Schedule, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/schedule", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	body, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("fetching the reference MTAs from %s: %w", c.base, err)
	}
	var s op25bv1.Schedule
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("fetching the reference MTAs from %s: not a schedule: %w", c.base, err)
	}
	if len(s.GetReferenceMtas()) == 0 {
		return nil, fmt.Errorf("%s lists no reference MTA", c.base)
	}
	return &s, nil
}

// Submit uploads a round and returns the submission as the collector
// stored it.
func (c *Collector) Submit(ctx context.Context, rep *op25bv1.ProbeReport) (*op25bv1.SubmitRoundResponse, error) {
	b, err := proto.Marshal(&op25bv1.SubmitRoundRequest{Report: rep})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/submissions", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Accept", "application/json")
	body, err := c.do(req, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	var resp op25bv1.SubmitRoundResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("the collector's answer is not a SubmitRoundResponse: %w", err)
	}
	return &resp, nil
}

// ShareURL is the address of a submission's page.
func (c *Collector) ShareURL(resp *op25bv1.SubmitRoundResponse) string {
	return c.base + resp.GetSharePath()
}

// do sends req and returns the body of an answer with status want, or the
// collector's error message.
func (c *Collector) do(req *http.Request, want int) ([]byte, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode == want {
		return body, nil
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		msg = e.Error.Message
	}
	switch {
	case msg != "":
	case resp.StatusCode == http.StatusNotFound:
		msg = "is this the collector's web address?"
	default:
		msg = clip.Text(strings.TrimSpace(string(body)), 200)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && resp.StatusCode == http.StatusTooManyRequests {
		msg += fmt.Sprintf(" (retry after %s s)", ra)
	}
	return nil, fmt.Errorf("%s: %s", resp.Status, msg)
}
