// Package plugin is the backend of the OP25B Observatory data source: it
// answers Grafana's queries and health checks from a collector's gRPC
// DatasetService (proto/op25b/v1/dataset.proto), through the module's own
// copy of the generated code (internal/op25bv1; dashboard/README.md).
package plugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	op25bv1 "github.com/op25b/observatory/dashboard/pkg/internal/op25bv1"
	"github.com/op25b/observatory/dashboard/pkg/models"
)

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.StreamHandler         = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// Datasource is one configured data source: a client connection to one
// collector.
type Datasource struct {
	address string
	// uid names the data source in its Grafana Live channels.
	uid    string
	conn   *grpc.ClientConn
	client op25bv1.DatasetServiceClient
	// err is why the settings cannot work; CheckHealth and every query
	// report it.
	err error
}

// NewDatasource creates an instance from its settings. Bad settings do not
// fail it: CheckHealth then says what to fix.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	st, err := models.Load(s)
	if err != nil {
		return &Datasource{uid: s.UID, err: err}, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: st.ServerName, InsecureSkipVerify: st.TLSSkipVerify}
	if st.TLSCACert != "" {
		tc.RootCAs = x509.NewCertPool()
		tc.RootCAs.AppendCertsFromPEM([]byte(st.TLSCACert)) // models.Load checked it
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if st.APIToken != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(st.APIToken)))
	}
	conn, err := grpc.NewClient(st.Address, opts...)
	if err != nil {
		return &Datasource{address: st.Address, uid: s.UID, err: err}, nil
	}
	return &Datasource{address: st.Address, uid: s.UID, conn: conn, client: op25bv1.NewDatasetServiceClient(conn)}, nil
}

// Dispose closes the connection when the settings change or Grafana stops.
func (d *Datasource) Dispose() {
	if d.conn != nil {
		d.conn.Close()
	}
}

// bearer sends the API token with every call, over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
