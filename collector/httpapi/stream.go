package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/stream"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// The pace of a live stream: a comment every Heartbeat keeps proxies from
// closing a quiet connection, and a write that cannot be done within
// streamWriteTimeout (a client that stopped reading) ends it.
var (
	Heartbeat          = 15 * time.Second
	streamWriteTimeout = 10 * time.Second
)

// stream serves the live stream as Server-Sent Events (docs/dataset.md,
// Live stream).
func (s *server) stream(w http.ResponseWriter, r *http.Request, q *query) error {
	var verdicts []pb.Verdict
	if v := q.v.Get("verdict"); v != "" {
		for _, name := range strings.Split(v, ",") {
			verdict, err := dataset.ParseVerdict(name)
			q.keep(err)
			verdicts = append(verdicts, verdict)
		}
	}
	port := uint32(0)
	if p := q.v.Get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			n = 1 // refused below with the ports allowed
		}
		port = uint32(n)
	}
	f, err := stream.ParseFilter(q.asn(), q.v.Get("country"), port, verdicts)
	q.keep(err)
	if q.err != nil {
		return q.err
	}
	if s.broker == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "this collector serves no live stream")
		return nil
	}
	sub, err := s.broker.Subscribe(f, r.Header.Get("Last-Event-ID"))
	if err != nil { // stream.ErrFull or ErrClosed
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
		return nil
	}
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	if r.Method == http.MethodHead {
		return nil
	}
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// retry: how long a browser's EventSource waits before it reconnects.
	if err := write([]byte("retry: 5000\n\n")); err != nil {
		return nil
	}
	for _, e := range sub.Backlog {
		if _, err := w.Write(e.SSE); err != nil {
			return nil
		}
	}
	if err := write(nil); err != nil {
		return nil
	}
	sub.Sent(len(sub.Backlog))
	beat := time.NewTicker(Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-beat.C:
			if write([]byte(": heartbeat\n\n")) != nil {
				return nil
			}
		case e, ok := <-sub.C():
			if !ok {
				write(fmt.Appendf(nil, "event: error\ndata: %s\n\n", errorData(sub.Reason())))
				return nil
			}
			// Write what else waits before one flush.
			n := 1
			_, err := w.Write(e.SSE)
			for more := true; more && err == nil && n < 256; {
				select {
				case e, ok := <-sub.C():
					if more = ok; ok {
						_, err = w.Write(e.SSE)
						n++
					}
				default:
					more = false
				}
			}
			if err != nil || write(nil) != nil {
				return nil
			}
			sub.Sent(n)
		}
	}
}

// errorData is the data of the final error event: an API error body, with
// the status of a limit (429, RESOURCE_EXHAUSTED).
func errorData(reason string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": http.StatusTooManyRequests,
		"status": "RESOURCE_EXHAUSTED", "message": "stream: dropped: " + reason}})
	return b
}
