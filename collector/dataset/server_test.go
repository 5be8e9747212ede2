package dataset_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// TestPageSizeBound: page_size is at most 5,000 as documented, and more
// is an error that says so (issue 10: 1,000,000,000 was accepted).
func TestPageSizeBound(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	s := &dataset.Server{D: d}
	ctx := context.Background()
	if _, err := s.ListASNs(ctx, &pb.ListASNsRequest{PageSize: 5000}); err != nil {
		t.Errorf("ListASNs(page_size 5000): %v", err)
	}
	for name, call := range map[string]func() error{
		"ListASNs": func() error {
			_, err := s.ListASNs(ctx, &pb.ListASNsRequest{PageSize: 1000000000})
			return err
		},
		"ListPolicyChanges": func() error {
			_, err := s.ListPolicyChanges(ctx, &pb.ListPolicyChangesRequest{PageSize: 5001})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 5000") {
			t.Errorf("%s over the page size bound: %v; want InvalidArgument saying at most 5000", name, err)
		}
	}
}

// TestServerErrorsAreLogged: a failure on the server's side is logged
// under an error id that the caller is given (issue 10: the caller was
// told that the log had the details, and nothing was logged).
func TestServerErrorsAreLogged(t *testing.T) {
	st, d := datasettest.Open(t, datasettest.NewWorld())
	var logs bytes.Buffer
	s := &dataset.Server{D: d, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	st.Pool.Close()
	_, err := s.ListASNs(context.Background(), &pb.ListASNsRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("ListASNs on a closed pool: %v; want Internal", err)
	}
	id := regexp.MustCompile(`error id ([0-9a-f]{12})`).FindStringSubmatch(status.Convert(err).Message())
	if id == nil {
		t.Fatalf("message %q names no error id", status.Convert(err).Message())
	}
	if !strings.Contains(logs.String(), "error_id="+id[1]) || !strings.Contains(logs.String(), "closed pool") {
		t.Errorf("the log has no line with error_id=%s and the cause; log:\n%s", id[1], logs.String())
	}
}
