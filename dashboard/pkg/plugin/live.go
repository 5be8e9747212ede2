package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	op25bv1 "github.com/op25b/observatory/dashboard/pkg/internal/op25bv1"
	"github.com/op25b/observatory/dashboard/pkg/internal/verdict"
)

// Grafana Live channels of the data source are ds/<uid>/<path>, where path
// is one of
//
//	results/<asn>[/port=<port>][/verdict=<VERDICT>]...
//	changes/<asn>
//
// Live channel paths allow no query string, so the filters are segments.
// RunStream relays the collector's DatasetService.Stream for the path.
const (
	liveResults = "results"
	liveChanges = "changes"
)

// Reconnection backoff: the first retry comes soon (a collector restart or
// a drop as too slow), later ones less often while the collector stays
// away.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// channel is a parsed live channel path.
type channel struct {
	kind     string // liveResults or liveChanges
	asn      uint32
	port     uint32 // 0: any
	verdicts []op25bv1.Verdict
}

// parseChannel checks a channel path; errors say what to change.
func parseChannel(path string) (channel, error) {
	segs := strings.Split(path, "/")
	if len(segs) < 2 || (segs[0] != liveResults && segs[0] != liveChanges) {
		return channel{}, fmt.Errorf("live path %q: want results/<asn> or changes/<asn>", path)
	}
	c := channel{kind: segs[0]}
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(segs[1]), "AS"), 10, 32)
	if err != nil || n == 0 {
		return channel{}, fmt.Errorf("live path %q: ASN %q: want a number such as 64500", path, segs[1])
	}
	c.asn = uint32(n)
	for _, s := range segs[2:] {
		key, value, _ := strings.Cut(s, "=")
		switch {
		case c.kind == liveResults && key == "port":
			p, err := strconv.ParseUint(value, 10, 32)
			if err != nil || (p != 25 && p != 587 && p != 465) {
				return channel{}, fmt.Errorf("live path %q: port %q: want 25, 587 or 465", path, value)
			}
			c.port = uint32(p)
		case c.kind == liveResults && key == "verdict":
			v, err := verdict.Parse(value)
			if err != nil {
				return channel{}, fmt.Errorf("live path %q: %w", path, err)
			}
			c.verdicts = append(c.verdicts, op25bv1.Verdict(v))
		default:
			return channel{}, fmt.Errorf("live path %q: unknown filter %q", path, s)
		}
	}
	return c, nil
}

// path is the channel path parseChannel reads.
func (c channel) path() string {
	s := fmt.Sprintf("%s/%d", c.kind, c.asn)
	if c.port != 0 {
		s += fmt.Sprintf("/port=%d", c.port)
	}
	for _, v := range c.verdicts {
		s += "/verdict=" + verdict.Verdict(v).String()
	}
	return s
}

// SubscribeStream lets anyone who may query the data source watch a valid
// path. The SDK has no "bad request" status: an invalid path is not found.
func (d *Datasource) SubscribeStream(_ context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	if _, err := parseChannel(req.Path); err != nil {
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}, nil
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK}, nil
}

// PublishStream is refused: the channels carry the collector's data only.
func (d *Datasource) PublishStream(context.Context, *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

// RunStream relays the collector's stream for req.Path, one frame per
// event, until ctx ends. It reconnects after a transient failure, resuming
// after the last event it relayed; it returns the error of a request the
// collector refuses.
func (d *Datasource) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	if d.err != nil {
		return d.err
	}
	c, err := parseChannel(req.Path)
	if err != nil {
		return err
	}
	sreq := &op25bv1.StreamRequest{Asn: c.asn, Port: c.port, Verdicts: c.verdicts}
	backoff := minBackoff
	for {
		relayed, err := d.relay(ctx, c, sreq, sender)
		if ctx.Err() != nil {
			return nil
		}
		if !transient(err) {
			return fmt.Errorf("live %s: %w", req.Path, err)
		}
		if relayed {
			backoff = minBackoff
		}
		log.DefaultLogger.Warn("live stream interrupted; reconnecting", "path", req.Path, "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// relay reads one connection of the collector's stream, keeping the id of
// the last event in sreq for a resumption, and reports whether it relayed
// any event.
func (d *Datasource) relay(ctx context.Context, c channel, sreq *op25bv1.StreamRequest, sender *backend.StreamSender) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.client.Stream(ctx, sreq)
	if err != nil {
		return false, err
	}
	relayed := false
	for {
		e, err := stream.Recv()
		if err != nil {
			return relayed, err
		}
		relayed = true
		sreq.LastEventId = e.GetId()
		var f *data.Frame
		switch {
		case c.kind == liveResults && e.GetResult() != nil:
			r := e.GetResult()
			f = liveResultsFrame()
			f.AppendRow(r.GetMeasuredAt().AsTime().UTC(), r.GetPrefix(), familyName(r.GetFamily()), r.GetPort(),
				strings.TrimPrefix(r.GetVerdict().String(), "VERDICT_"), r.GetFailure(), r.GetRefmtaId())
		case c.kind == liveChanges && e.GetChange() != nil:
			ch := e.GetChange()
			f = liveChangesFrame()
			f.AppendRow(ch.GetChangedAt().AsTime().UTC(), familyName(ch.GetFamily()), className(ch.GetFromClass()),
				className(ch.GetToClass()), ch.GetRetracted())
		case e.GetGap() != nil:
			log.DefaultLogger.Warn("live stream missed events", "path", c.path(), "missed", e.GetGap().GetMissed(), "reason", e.GetGap().GetReason())
		}
		if f != nil {
			if err := sender.SendFrame(f, data.IncludeAll); err != nil {
				return relayed, err
			}
		}
	}
}

// transient reports whether a failed stream is worth opening again: the
// collector went away, restarted, or dropped us as too slow.
func transient(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown, codes.DeadlineExceeded:
		return true
	}
	return false
}

// liveResultsFrame is the schema of the results channels: the live query's
// empty frame and each streamed row.
func liveResultsFrame() *data.Frame {
	return data.NewFrame("live",
		field("time", "Measured at", []time.Time{}),
		field("prefix", "Prefix", []string{}),
		field("family", "Family", []string{}),
		field("port", "Port", []uint32{}),
		field("verdict", "Verdict", []string{}),
		field("failure", "Failure", []string{}),
		field("refmta", "Reference MTA", []string{}),
	)
}

// liveChangesFrame is the schema of the changes channels.
func liveChangesFrame() *data.Frame {
	return data.NewFrame("live_changes",
		field("time", "Changed at", []time.Time{}),
		field("family", "Family", []string{}),
		field("from", "From", []string{}),
		field("to", "To", []string{}),
		field("retracted", "Retracted", []bool{}),
	)
}

// live answers the live query: no rows, and the channel a panel subscribes
// to for the ASN's results as the collector stores them.
func (d *Datasource) live(_ context.Context, q params) (data.Frames, error) {
	if q.asn == 0 {
		return nil, invalid("the live query needs an ASN")
	}
	c := channel{kind: liveResults, asn: q.asn, port: q.port, verdicts: q.verdicts}
	f := liveResultsFrame()
	f.Meta = &data.FrameMeta{
		Channel:             live.Channel{Scope: live.ScopeDatasource, Namespace: d.uid, Path: c.path()}.String(),
		ExecutedQueryString: "Stream " + c.path(),
	}
	return data.Frames{f}, nil
}
