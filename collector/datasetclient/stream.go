package datasetclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// StreamRequest selects the events of the live stream; zero fields select
// any. Port and Verdicts select results only.
type StreamRequest struct {
	ASN      uint32
	Country  string
	Port     uint32
	Verdicts []pb.Verdict
	// LastEventID resumes after this event (a StreamResponse.Id).
	LastEventID string
}

// DroppedError is the collector ending a stream on its side: the client
// read too slowly, or the collector is shutting down. Resuming with the
// last event id gets what was missed while the collector keeps it.
type DroppedError struct{ Message string }

func (e *DroppedError) Error() string { return "collector ended the stream: " + e.Message }

// maxEvent bounds one event's data: a result is a few hundred bytes.
const maxEvent = 1 << 20

// Stream reads the live stream (/api/v1/stream) and calls each with every
// event, gaps included, until ctx ends (nil), each returns an error (that
// error), the collector drops the client (*DroppedError) or the connection
// ends (an error). It does not reconnect: callers resume with the Id of the
// last event they got.
func (c *Client) Stream(ctx context.Context, req StreamRequest, each func(*pb.StreamResponse) error) error {
	v := url.Values{}
	if req.ASN != 0 {
		v.Set(pASN, strconv.FormatUint(uint64(req.ASN), 10))
	}
	if req.Country != "" {
		v.Set(pCountry, req.Country)
	}
	if req.Port != 0 {
		v.Set("port", strconv.FormatUint(uint64(req.Port), 10))
	}
	if len(req.Verdicts) > 0 {
		names := make([]string, len(req.Verdicts))
		for i, vd := range req.Verdicts {
			names[i] = dataset.VerdictName(vd)
		}
		v.Set("verdict", strings.Join(names, ","))
	}
	resp, err := c.doHeaders(ctx, "stream", v, "text/event-stream", map[string]string{"Last-Event-ID": req.LastEventID})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEvent)
	var id, kind string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				kind = value
			case "data":
				data = append(data, value...)
			}
			continue
		}
		if kind != "" {
			e, err := decodeEvent(id, kind, data)
			if err != nil {
				return err
			}
			if e != nil {
				if err := each(e); err != nil {
					return err
				}
			}
		}
		kind, data = "", data[:0]
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the stream: %w", err)
	}
	return fmt.Errorf("reading the stream: the collector closed the connection")
}

// decodeEvent returns one SSE event as a StreamResponse: nil for a type
// this client does not know (a newer collector's), a *DroppedError for the
// final error event.
func decodeEvent(id, kind string, data []byte) (*pb.StreamResponse, error) {
	e := &pb.StreamResponse{Id: id}
	var m proto.Message
	switch kind {
	case "result":
		r := &pb.PublicResult{}
		e.Event, m = &pb.StreamResponse_Result{Result: r}, r
	case "change":
		c := &pb.PolicyChange{}
		e.Event, m = &pb.StreamResponse_Change{Change: c}, c
	case "gap":
		g := &pb.StreamGap{}
		e.Event, m = &pb.StreamResponse_Gap{Gap: g}, g
	case "error":
		var doc struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		json.Unmarshal(data, &doc)
		if doc.Error.Message == "" {
			doc.Error.Message = string(data)
		}
		return nil, &DroppedError{Message: doc.Error.Message}
	default:
		return nil, nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decoding a %s event: %w", kind, err)
	}
	return e, nil
}
