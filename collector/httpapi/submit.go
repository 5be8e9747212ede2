package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/submit"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Submitter takes one-off contributions; *submit.Service is one. Its
// errors are those of submit.Service.Submit.
type Submitter interface {
	// Schedule is the plan a one-off check follows; nil when there is none.
	Schedule() *pb.Schedule
	Submit(ctx context.Context, client netip.Addr, req *pb.SubmitRoundRequest) (string, error)
}

// MaxSubmission bounds the body of a submission: a round of 64 results
// with their evidence is well under it.
const MaxSubmission = 1 << 20

// The content types of a submission's body.
const (
	protobufType = "application/x-protobuf"
	protobufAlt  = "application/protobuf"
)

// SharePath is the web page of a submission.
func SharePath(id string) string { return "/result/" + id }

// schedule answers GET /api/v1/schedule: what `op25b-agent check --submit`
// probes.
func (s *server) schedule(r *http.Request, q *query) (proto.Message, error) {
	sch := s.sub.Schedule()
	if sch == nil || len(sch.GetReferenceMtas()) == 0 {
		return nil, submit.ErrDisabled
	}
	return sch, nil
}

// getSubmission answers GET /api/v1/submissions/{id}.
func (s *server) getSubmission(r *http.Request, q *query) (proto.Message, error) {
	return s.q.GetSubmission(r.Context(), r.PathValue("id"))
}

// postSubmission answers POST /api/v1/submissions: it decodes the round,
// has it stored, and answers 201 with the submission as stored and where
// its page is.
func (s *server) postSubmission(w http.ResponseWriter, r *http.Request, q *query) error {
	var req pb.SubmitRoundRequest
	if err := decodeSubmission(w, r, &req); err != nil {
		return err
	}
	id, err := s.sub.Submit(r.Context(), ClientAddr(r, s.trustProxy), &req)
	if err != nil {
		return err
	}
	sub, err := s.q.GetSubmission(r.Context(), id)
	if err != nil {
		return fmt.Errorf("httpapi: reading submission %s back: %w", id, err)
	}
	b, err := jsonOptions.Marshal(&pb.SubmitRoundResponse{Submission: sub, SharePath: SharePath(id)})
	if err != nil {
		return fmt.Errorf("httpapi: encode submission: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", jsonType)
	h.Set("Cache-Control", "no-store")
	h.Set("Location", prefix+"/submissions/"+id)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(http.StatusCreated)
	w.Write(append(b, '\n'))
	return nil
}

// errTooLarge and errMediaType are answered 413 and 415.
var (
	errTooLarge  = errors.New("request body too large")
	errMediaType = errors.New("unsupported media type")
)

// decodeSubmission reads r's body, protobuf or protojson, into req.
func decodeSubmission(w http.ResponseWriter, r *http.Request, req *pb.SubmitRoundRequest) error {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != protobufType && ct != protobufAlt && ct != "application/json" {
		return fmt.Errorf("%w: send the round as %s (op25b.v1.SubmitRoundRequest) or application/json (its protojson), not %q",
			errMediaType, protobufType, r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSubmission))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: a submission is at most %d KiB", errTooLarge, MaxSubmission>>10)
	case err != nil:
		return fmt.Errorf("%w: reading the body: %v", submit.ErrInvalid, err)
	}
	if ct == "application/json" {
		// Fields a newer agent adds are not an error.
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, req)
	} else {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		return fmt.Errorf("%w: the body is not an op25b.v1.SubmitRoundRequest: %v", submit.ErrInvalid, err)
	}
	return nil
}

// submitFailure answers the errors of a submission, or reports false when
// err is not one.
func submitFailure(w http.ResponseWriter, err error) bool {
	var rate *submit.RateError
	switch {
	case errors.As(err, &rate):
		w.Header().Set("Retry-After", strconv.Itoa(int(rate.RetryAfter/time.Second)))
		writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", rate.What)
	case errors.Is(err, store.ErrReplayed):
		writeError(w, http.StatusConflict, "ALREADY_EXISTS", err.Error()+"; nothing was stored: run the check again to submit a new round")
	case errors.Is(err, submit.ErrInvalid):
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
	case errors.Is(err, submit.ErrDisabled):
		writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	case errors.Is(err, submit.ErrUnavailable):
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", err.Error())
	case errors.Is(err, errMediaType):
		writeError(w, http.StatusUnsupportedMediaType, "INVALID_ARGUMENT", err.Error())
	default:
		return false
	}
	return true
}

// ClientAddr is the address of r's client: the last X-Forwarded-For entry
// when trustProxy (as the reverse proxy in front appended it), else the
// connection's.
func ClientAddr(r *http.Request, trustProxy bool) netip.Addr {
	var addr netip.Addr
	if trustProxy {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			list := strings.Split(v[len(v)-1], ",")
			addr, _ = netip.ParseAddr(strings.TrimSpace(list[len(list)-1]))
		}
	}
	if !addr.IsValid() {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			addr = ap.Addr()
		}
	}
	return addr.Unmap()
}

// noSubmissions is the Submitter of a collector that takes none.
type noSubmissions struct{}

func (noSubmissions) Schedule() *pb.Schedule { return nil }

func (noSubmissions) Submit(context.Context, netip.Addr, *pb.SubmitRoundRequest) (string, error) {
	return "", submit.ErrDisabled
}
