package dataset

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Server is the gRPC DatasetService over a Dataset.
type Server struct {
	pb.UnimplementedDatasetServiceServer
	D *Dataset
}

var _ pb.DatasetServiceServer = (*Server)(nil)

// Status maps a query-layer error to its gRPC status.
func Status(err error) error {
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
	return status.Error(codes.Internal, "the dataset query failed; the collector's log has the details")
}

func (s *Server) ListASNs(ctx context.Context, req *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	resp, err := s.D.ListASNs(ctx, req)
	return resp, Status(err)
}

func (s *Server) GetASN(ctx context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	resp, err := s.D.GetASN(ctx, req)
	return resp, Status(err)
}

func (s *Server) GetPeers(ctx context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	resp, err := s.D.GetPeers(ctx, req)
	return resp, Status(err)
}

func (s *Server) ListPolicyChanges(ctx context.Context, req *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	resp, err := s.D.ListPolicyChanges(ctx, req)
	return resp, Status(err)
}

func (s *Server) ListCountries(ctx context.Context, req *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	resp, err := s.D.ListCountries(ctx, req)
	return resp, Status(err)
}

func (s *Server) GetInfo(ctx context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	resp, err := s.D.GetInfo(ctx, req)
	return resp, Status(err)
}

func (s *Server) ExportResults(req *pb.ExportResultsRequest, stream grpc.ServerStreamingServer[pb.ExportResultsResponse]) error {
	return Status(s.D.ExportResults(stream.Context(), req, func(batch []*pb.PublicResult) error {
		return stream.Send(&pb.ExportResultsResponse{Results: batch})
	}))
}
