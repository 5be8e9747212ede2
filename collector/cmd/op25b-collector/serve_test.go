package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/httpapi"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// emptyDataset answers every query with nothing published.
type emptyDataset struct{}

func (emptyDataset) ListASNs(context.Context, *pb.ListASNsRequest) (*pb.ListASNsResponse, error) {
	return &pb.ListASNsResponse{}, nil
}
func (emptyDataset) GetASN(_ context.Context, req *pb.GetASNRequest) (*pb.GetASNResponse, error) {
	return nil, fmt.Errorf("%w: AS%d", dataset.ErrNotFound, req.GetAsn())
}
func (emptyDataset) GetPeers(_ context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	return nil, fmt.Errorf("%w: AS%d", dataset.ErrNotFound, req.GetAsn())
}
func (emptyDataset) ListPolicyChanges(context.Context, *pb.ListPolicyChangesRequest) (*pb.ListPolicyChangesResponse, error) {
	return &pb.ListPolicyChangesResponse{}, nil
}
func (emptyDataset) ListCountries(context.Context, *pb.ListCountriesRequest) (*pb.ListCountriesResponse, error) {
	return &pb.ListCountriesResponse{}, nil
}
func (emptyDataset) GetPrefixes(_ context.Context, req *pb.GetPrefixesRequest) (*pb.GetPrefixesResponse, error) {
	return nil, fmt.Errorf("%w: AS%d", dataset.ErrNotFound, req.GetAsn())
}
func (emptyDataset) GetInfo(context.Context, *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	return &pb.GetInfoResponse{}, nil
}
func (emptyDataset) ExportResults(context.Context, *pb.ExportResultsRequest, func([]*pb.PublicResult) error) error {
	return nil
}
func (emptyDataset) GetSubmission(_ context.Context, id string) (*pb.Submission, error) {
	return nil, fmt.Errorf("%w: %s", dataset.ErrNotFound, id)
}
func (emptyDataset) ChangeEvents(context.Context, dataset.EventFilter) ([]dataset.ChangeEvent, error) {
	return nil, nil
}

// TestEveryRouteIsRateLimited is issue 10's point 4: the web page and
// /healthz had no rate limit (6,063 requests in 10 s from one address,
// all served). Every route of the HTTP listener now shares the limit per
// client; the clock stands still, so no token comes back.
func TestEveryRouteIsRateLimited(t *testing.T) {
	const rate, burst, flood = 10, 40, 1000
	now := time.Unix(0, 0)
	limit := httpapi.NewLimiter(httpapi.LimitOptions{Rate: rate, Burst: burst, Now: func() time.Time { return now }})
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "# metrics") })
	h := httpHandler(emptyDataset{}, func(context.Context) error { return nil }, metrics, limit, webOptions{}, slog.New(slog.DiscardHandler))
	paths := []string{"/", "/asn/64500", "/check", "/result/019cc3a2-5b10-7e4a-9c2d-3f1e8a6b2c99", "/api/v1/schedule", "/healthz",
		"/static/app.css", "/favicon.ico", "/api/v1/info", "/api/v1/asns", "/metrics", "/nope"}
	for i, path := range paths {
		client := fmt.Sprintf("192.0.2.%d:40000", i+1)
		served, limited := 0, 0
		for range flood {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.RemoteAddr = client
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code == http.StatusTooManyRequests {
				limited++
			} else {
				served++
			}
		}
		if served != burst || limited != flood-burst {
			t.Errorf("%d requests for %s from one address: %d served, %d refused with 429; want %d and %d", flood, path, served, limited, burst, flood-burst)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "198.51.100.1:40000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("another address during the floods: %d; want 200", w.Code)
	}
	if got, want := limit.Refused(), uint64(len(paths)*(flood-burst)); got != want {
		t.Errorf("Refused() = %d; want %d", got, want)
	}
}

// TestSplitFiles: the HTTP listener gets at most a quarter of the
// open-file limit, gRPC the rest but a reserve, so that idle HTTP clients
// can never take the descriptors agents upload with.
func TestSplitFiles(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		files, httpFlag, grpcFlag, http, grpc int
	}{
		{20000, 1024, 0, 1024, 20000 - 1024 - descriptorReserve},
		{1048576, 1024, 0, 1024, 1048576 - 1024 - descriptorReserve},
		{2048, 1024, 0, 512, 2048 - 512 - descriptorReserve},
		{20000, 1024, 5000, 1024, 5000},
	} {
		h, g, err := splitFiles(tc.files, tc.httpFlag, tc.grpcFlag, log)
		if err != nil || h != tc.http || g != tc.grpc {
			t.Errorf("splitFiles(%d, %d, %d) = %d, %d, %v; want %d, %d", tc.files, tc.httpFlag, tc.grpcFlag, h, g, err, tc.http, tc.grpc)
		}
	}
	if _, _, err := splitFiles(300, 1024, 0, log); err == nil {
		t.Errorf("an open-file limit of 300: no error")
	}
}
