package dataset

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Server is the gRPC DatasetService over a Dataset.
type Server struct {
	pb.UnimplementedDatasetServiceServer
	D *Dataset
	// Log receives the details of failed queries (slog.Default()).
	Log *slog.Logger
	// Streamer serves Stream (*stream.Broker); nil: Unimplemented.
	Streamer interface {
		Serve(*pb.StreamRequest, grpc.ServerStreamingServer[pb.StreamResponse]) error
	}
}

var _ pb.DatasetServiceServer = (*Server)(nil)

// status maps a query-layer error to its gRPC status; the server's own
// failures are logged under an error id that the caller is given.
func (s *Server) status(method string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	return status.Error(codes.Internal, LogFailure(log, "DatasetService/"+method, err))
}

// LogFailure logs a dataset query that failed on the server's side, under
// a fresh error id, and returns the message for the caller, which names
// the id so that the operator can find the details.
func LogFailure(log *slog.Logger, where string, err error) string {
	b := make([]byte, 6)
	rand.Read(b)
	id := hex.EncodeToString(b)
	log.Error("dataset query failed", "where", where, "error_id", id, "err", err)
	return fmt.Sprintf("the dataset query failed (error id %s); the collector's log has the details", id)
}

func (s *Server) ListASNs(ctx context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	resp, err := s.D.ListASNs(ctx, req)
	return resp, s.status("ListASNs", err)
}

func (s *Server) GetASN(ctx context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	resp, err := s.D.GetASN(ctx, req)
	return resp, s.status("GetASN", err)
}

func (s *Server) GetPeers(ctx context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	resp, err := s.D.GetPeers(ctx, req)
	return resp, s.status("GetPeers", err)
}

func (s *Server) ListPolicyChanges(ctx context.Context, req *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	resp, err := s.D.ListPolicyChanges(ctx, req)
	return resp, s.status("ListPolicyChanges", err)
}

func (s *Server) ListCountries(ctx context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	resp, err := s.D.ListCountries(ctx, req)
	return resp, s.status("ListCountries", err)
}

func (s *Server) GetPrefixes(ctx context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	resp, err := s.D.GetPrefixes(ctx, req)
	return resp, s.status("GetPrefixes", err)
}

func (s *Server) GetInfo(ctx context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	resp, err := s.D.GetInfo(ctx, req)
	return resp, s.status("GetInfo", err)
}

func (s *Server) ExportResults(req *pb.ExportResultsRequest, stream grpc.ServerStreamingServer[pb.ExportResultsResponse]) error {
	return s.status("ExportResults", s.D.ExportResults(stream.Context(), req, func(batch []*pb.PublicResult) error {
		return stream.Send(&pb.ExportResultsResponse{Results: batch})
	}))
}

func (s *Server) Stream(req *pb.StreamRequest, srv grpc.ServerStreamingServer[pb.StreamResponse]) error {
	if s.Streamer == nil {
		return status.Error(codes.Unimplemented, "this collector serves no live stream (serve --stream=false)")
	}
	return s.Streamer.Serve(req, srv)
}
