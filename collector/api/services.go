package api

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/clip"
	"github.com/op25b/observatory/internal/ratelimit"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// MaxBatch bounds the results or sightings of one upload message; larger
// batches are refused (ResourceExhausted) before any is stored.
const MaxBatch = 1000

// Server implements the enrollment, agent and reference-MTA services.
type Server struct {
	op25bv1.UnimplementedEnrollmentServiceServer
	op25bv1.UnimplementedAgentServiceServer
	op25bv1.UnimplementedRefMTAServiceServer

	Auth      *auth.Service
	Store     *store.Store
	Converter *ingest.Converter
	// Keys, when set, finds the keys of the reference MTAs each batch
	// names, which the Converter verifies their statements with in place
	// of its own Keys.
	Keys *KeyCache
	// Schedule returns the plan agents follow now.
	Schedule func() *op25bv1.Schedule
	// Spread, when set, gives each agent a round offset that spreads the
	// agents of one prefix over the interval.
	Spread  *Spreader
	Metrics *Metrics
	// Limit bounds upload batches per principal (shared with the Guard).
	Limit *ratelimit.Limiter[string]
	Log   *slog.Logger
}

// Register registers the services on g.
func (s *Server) Register(g *grpc.Server) {
	op25bv1.RegisterEnrollmentServiceServer(g, s)
	op25bv1.RegisterAgentServiceServer(g, s)
	op25bv1.RegisterRefMTAServiceServer(g, s)
}

// Enroll implements EnrollmentService.
func (s *Server) Enroll(ctx context.Context, req *op25bv1.EnrollRequest) (*op25bv1.EnrollResponse, error) {
	var kind auth.Kind
	switch req.GetKind() {
	case op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT:
		kind = auth.Agent
	case op25bv1.PrincipalKind_PRINCIPAL_KIND_REFMTA:
		kind = auth.RefMTA
	default:
		return nil, status.Error(codes.InvalidArgument, "kind must be an agent or a reference MTA")
	}
	if len(req.GetPublicKey()) != ed25519.PublicKeySize {
		return nil, status.Error(codes.InvalidArgument, "public_key must be a 32-byte Ed25519 key")
	}
	id, cred, err := s.Auth.Enroll(ctx, req.GetToken(), kind, ed25519.PublicKey(req.GetPublicKey()), clip.Text(req.GetLabel(), 128), clip.Text(req.GetSoftwareVersion(), 64))
	switch {
	case errors.Is(err, auth.ErrUnknown):
		return nil, status.Error(codes.Unauthenticated, "unknown enrollment token")
	case errors.Is(err, auth.ErrRevoked):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		s.Log.Error("enroll failed", "err", err)
		return nil, status.Error(codes.Unavailable, "enrollment is unavailable now; retry")
	}
	s.Log.Info("enrolled", "principal", id, "kind", kind)
	return &op25bv1.EnrollResponse{PrincipalId: id, Credential: cred}, nil
}

// GetSchedule implements AgentService.
func (s *Server) GetSchedule(ctx context.Context, req *op25bv1.GetScheduleRequest) (*op25bv1.GetScheduleResponse, error) {
	p, _ := PrincipalFrom(ctx)
	// Before anything can fail: an agent with nothing to upload reports
	// its losses only here.
	s.recordLoss(ctx, p.ID, req.GetSpool())
	sch := s.Schedule()
	if sch == nil {
		return nil, status.Error(codes.Unavailable, "no schedule configured yet")
	}
	if s.Spread != nil {
		if off, ok := s.Spread.Offset(p.ID, peerAddr(ctx), sch.GetInterval().AsDuration()); ok {
			// The offset is part of this agent's schedule and of its
			// version, so that a new offset reaches the agent.
			sch = proto.Clone(sch).(*op25bv1.Schedule)
			sch.Offset = durationpb.New(off)
			sch.Version = ScheduleVersion(sch)
		}
	}
	if req.GetCurrentVersion() == sch.GetVersion() {
		return &op25bv1.GetScheduleResponse{Unchanged: true}, nil
	}
	return &op25bv1.GetScheduleResponse{Schedule: sch}, nil
}

// UploadResults implements AgentService: each batch is validated, stored
// in one transaction, and answered with the ids now durable and the ones
// refused for good. A storage failure ends the stream with Unavailable
// and acknowledges nothing of that batch: the agent keeps it and retries.
func (s *Server) UploadResults(stream grpc.BidiStreamingServer[op25bv1.UploadResultsRequest, op25bv1.UploadResultsResponse]) error {
	ctx := stream.Context()
	p, _ := PrincipalFrom(ctx)
	peer := peerAddr(ctx)
	s.Metrics.streams.Inc()
	defer s.Metrics.streams.Dec()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(req.GetResults()) > MaxBatch {
			return status.Errorf(codes.ResourceExhausted, "batch of %d results; at most %d", len(req.GetResults()), MaxBatch)
		}
		if err := s.admit(ctx, p.ID); err != nil {
			return err
		}
		b, err := s.convert(ctx, req.GetResults(), p.ID, peer)
		if err != nil {
			s.Log.Error("looking up reference MTA keys failed; nothing acknowledged", "agent", p.ID, "results", len(req.GetResults()), "err", err)
			s.Metrics.storeErrors.Inc()
			return status.Error(codes.Unavailable, "cannot verify reference MTA statements now; keep the results and retry")
		}
		if _, err := s.Store.InsertResults(ctx, b.Results); err != nil {
			s.Log.Error("storing results failed; nothing acknowledged", "agent", p.ID, "results", len(b.Results), "err", err)
			s.Metrics.storeErrors.Inc()
			return status.Error(codes.Unavailable, "storage unavailable; keep the results and retry")
		}
		// Per agent in the database, not as a metric label: 100,000
		// agents would be 100,000 time series.
		s.recordLoss(ctx, p.ID, req.GetSpool())
		resp := &op25bv1.UploadResultsResponse{BatchId: req.GetBatchId()}
		committed := time.Now()
		for _, r := range b.Results {
			resp.AckedResultIds = append(resp.AckedResultIds, r.ID)
			s.Metrics.observe(r, committed)
		}
		for _, rej := range b.Rejected {
			resp.Rejections = append(resp.Rejections, &op25bv1.ResultRejection{ResultId: rej.ResultID, Reason: rej.Reason})
			s.Metrics.rejected.Inc()
		}
		if len(b.Rejected) > 0 {
			s.Log.Warn("rejected results", "agent", p.ID, "count", len(b.Rejected), "first", b.Rejected[0].Reason)
		}
		s.Metrics.batches.Inc()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// convert validates a batch with the keys of the reference MTAs it names.
// When they cannot be looked up it converts nothing: without them every
// result would be attributed from the ingest connection, for good.
func (s *Server) convert(ctx context.Context, results []*op25bv1.ProbeResult, agent string, peer netip.Addr) (ingest.Batch, error) {
	if s.Keys == nil {
		return s.Converter.Convert(results, agent, peer), nil
	}
	keys, err := s.Keys.Keys(ctx, results)
	if err != nil {
		return ingest.Batch{}, err
	}
	c := *s.Converter
	c.Keys = keys
	return c.Convert(results, agent, peer), nil
}

// UploadSightings implements RefMTAService.
func (s *Server) UploadSightings(stream grpc.BidiStreamingServer[op25bv1.UploadSightingsRequest, op25bv1.UploadSightingsResponse]) error {
	ctx := stream.Context()
	p, _ := PrincipalFrom(ctx)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.admit(ctx, p.ID); err != nil {
			return err
		}
		if len(req.GetSightings()) > MaxBatch {
			return status.Errorf(codes.ResourceExhausted, "batch of %d sightings; at most %d", len(req.GetSightings()), MaxBatch)
		}
		var ss []store.Sighting
		resp := &op25bv1.UploadSightingsResponse{BatchId: req.GetBatchId()}
		for _, x := range req.GetSightings() {
			sg, err := sighting(x, p.ID)
			if err != nil {
				// A malformed sighting cannot become valid on retry:
				// acknowledge it so the queue moves on, and say so.
				s.Log.Warn("dropping malformed sighting", "refmta", p.ID, "id", x.GetSightingId(), "err", err)
			} else {
				ss = append(ss, sg)
			}
			resp.AckedSightingIds = append(resp.AckedSightingIds, x.GetSightingId())
		}
		if _, err := s.Store.InsertSightings(ctx, ss); err != nil {
			s.Log.Error("storing sightings failed; nothing acknowledged", "refmta", p.ID, "err", err)
			s.Metrics.storeErrors.Inc()
			return status.Error(codes.Unavailable, "storage unavailable; keep the sightings and retry")
		}
		s.Metrics.sightings.Add(float64(len(ss)))
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// admit lets one more batch of a stream in: the principal is still not
// revoked and within its rate.
func (s *Server) admit(ctx context.Context, id string) error {
	if err := s.Auth.Check(ctx, id); errors.Is(err, auth.ErrRevoked) {
		return status.Error(codes.PermissionDenied, err.Error())
	} else if err != nil {
		return status.Error(codes.Unavailable, "cannot check credentials now; retry")
	}
	if s.Limit != nil && !s.Limit.Allow(id) {
		return status.Error(codes.ResourceExhausted, "too many batches; slow down and retry")
	}
	return nil
}

func sighting(x *op25bv1.Sighting, refmta string) (store.Sighting, error) {
	_, at, err := uuidv7.Parse(x.GetSightingId())
	if err != nil {
		return store.Sighting{}, err
	}
	src, err := netip.ParseAddr(x.GetObservedSource())
	if err != nil {
		return store.Sighting{}, fmt.Errorf("observed_source: %w", err)
	}
	if x.GetPort() == 0 || x.GetPort() > 65535 || len(x.GetNonce()) == 0 || len(x.GetNonce()) > 64 {
		return store.Sighting{}, errors.New("port or nonce out of range")
	}
	seen := at
	if x.GetSeenAt() != nil {
		seen = x.GetSeenAt().AsTime()
	}
	return store.Sighting{ID: x.GetSightingId(), SeenAt: seen, RefMTA: refmta, Nonce: x.GetNonce(),
		Source: src.Unmap(), Port: uint16(x.GetPort()), TLS: x.GetTls()}, nil
}

// ScheduleVersion is the version of a schedule: a hash of its content, so
// that any change is a new version and agents pick it up.
func ScheduleVersion(s *op25bv1.Schedule) string {
	c := proto.Clone(s).(*op25bv1.Schedule)
	c.Version = ""
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
