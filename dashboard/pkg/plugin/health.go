package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	op25bv1 "github.com/op25b/observatory/dashboard/pkg/internal/op25bv1"
)

// healthTimeout bounds the Save & test button's wait for the collector.
const healthTimeout = 10 * time.Second

// CheckHealth asks the collector which software and dataset it serves.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.err.Error()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	info, err := d.client.GetInfo(ctx, &op25bv1.GetInfoRequest{})
	if err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.unreachable(err)}, nil
	}
	refreshed := "never"
	if info.GetRefreshedAt().IsValid() {
		refreshed = info.GetRefreshedAt().AsTime().UTC().Format(time.RFC3339)
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk, Message: fmt.Sprintf(
		"Connected to OP25B collector %s, dataset schema %s, refreshed %s",
		info.GetSoftwareVersion(), info.GetSchemaVersion(), refreshed)}, nil
}

// unreachable explains a failed call to the collector and what to check.
func (d *Datasource) unreachable(err error) string {
	s := status.Convert(err)
	check := "check the address (the collector's gRPC host:port, --listen, default port 8443), " +
		"that the collector runs and Grafana can reach it, and the TLS CA certificate and server name"
	switch s.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		check = "check the API token"
	case codes.Unimplemented:
		check = "the server at this address is not an OP25B collector, or one too old to serve the dataset over gRPC"
	}
	return fmt.Sprintf("Cannot query the OP25B collector at %s: %s; %s", d.address, s.Message(), check)
}
