package api_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// The DatasetService over real gRPC and TLS, without a credential.
func TestDatasetServiceOverGRPC(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	c.Now = func() time.Time { return datasettest.Now }
	w := datasettest.NewWorld()
	w.Seed(t, c.Store)
	ctx := context.Background()
	if _, err := c.Dataset.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	client := op25bv1.NewDatasetServiceClient(c.Dial(t))
	list, err := client.ListASNs(ctx, &op25bv1.ListASNsRequest{PolicyClass: op25bv1.PolicyClass_POLICY_CLASS_INTERCEPT})
	if err != nil {
		t.Fatalf("ListASNs without a credential: %v", err)
	}
	if len(list.GetAsns()) != 1 || list.GetAsns()[0].GetAsn() != 64502 || list.GetAsns()[0].GetName() != "Relay Telecom" {
		t.Errorf("INTERCEPT ASNs %v; want AS64502 Relay Telecom", list.GetAsns())
	}
	if _, err := client.GetASN(ctx, &op25bv1.GetASNRequest{Asn: 65000}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown ASN: %v; want NotFound", err)
	}
	if _, err := client.ListASNs(ctx, &op25bv1.ListASNsRequest{Country: "Japan"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad country: %v; want InvalidArgument", err)
	}
	info, err := client.GetInfo(ctx, &op25bv1.GetInfoRequest{})
	if err != nil || info.GetSchemaVersion() != dataset.SchemaVersion || info.GetLicence() != "CC-BY-4.0" || !info.GetRefreshedAt().IsValid() {
		t.Errorf("GetInfo = %v, %v", info, err)
	}
	stream, err := client.ExportResults(ctx, &op25bv1.ExportResultsRequest{Range: &op25bv1.TimeRange{
		Start: timestamppb.New(datasettest.Now.Add(-7 * dataset.Day)), End: timestamppb.New(datasettest.Now.Add(dataset.Day))}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("export after %d results: %v", n, err)
		}
		n += len(resp.GetResults())
	}
	if n != len(w.Results()) {
		t.Errorf("exported %d results over gRPC; want %d", n, len(w.Results()))
	}
}
