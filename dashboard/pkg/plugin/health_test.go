package plugin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/op25b/observatory/dashboard/pkg/internal/op25bv1"
	"github.com/op25b/observatory/dashboard/pkg/models"
)

func checkHealth(t *testing.T, s backend.DataSourceInstanceSettings) *backend.CheckHealthResult {
	t.Helper()
	res, err := open(t, s).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil {
		t.Fatalf("CheckHealth: %v", err)
	}
	return res
}

func TestCheckHealth(t *testing.T) {
	s, w := seeded(t)
	res := checkHealth(t, s)
	if want := "Connected to OP25B collector dev, dataset schema " + w.SchemaVersion + ", refreshed 2026-03-10T12:00:00Z"; res.Status != backend.HealthStatusOk || res.Message != want {
		t.Errorf("CheckHealth = %v %q; want OK %q", res.Status, res.Message, want)
	}
}

// What a user who got the settings wrong reads on "Save & test".
func TestCheckHealthErrors(t *testing.T) {
	s, _ := seeded(t)
	st, err := models.Load(s)
	if err != nil {
		t.Fatal(err)
	}
	collector := st.Address
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name string
		s    backend.DataSourceInstanceSettings
		want []string
	}{
		{"no address", settings("", nil), []string{"no collector address: set it to the collector's gRPC host:port"}},
		{"a URL", settings("https://collector.example:8443", nil), []string{`collector address "https://collector.example:8443": want the collector's gRPC host:port`}},
		{"no port", settings("collector.example", nil), []string{"want the collector's gRPC host:port"}},
		{"bad CA", settings(collector, map[string]string{"tlsCACert": "not PEM"}), []string{"the TLS CA certificate holds no PEM certificate"}},
		{"unreachable", settings(closed, nil), []string{"Cannot query the OP25B collector at " + closed, "connection refused", "check the address"}},
		{"untrusted", settings(collector, nil), []string{"Cannot query the OP25B collector at " + collector, "certificate", "TLS CA certificate"}},
	} {
		res := checkHealth(t, tc.s)
		t.Logf("%s: %s", tc.name, res.Message)
		if res.Status != backend.HealthStatusError {
			t.Errorf("%s: CheckHealth = %v %q; want an error", tc.name, res.Status, res.Message)
		}
		for _, w := range tc.want {
			if !strings.Contains(res.Message, w) {
				t.Errorf("%s: CheckHealth says %q; want it to say %q", tc.name, res.Message, w)
			}
		}
		// Queries get the same explanation, each in its own response.
		resp, err := open(t, tc.s).QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{
			{RefID: "A", JSON: []byte(`{"queryType": "countries"}`), TimeRange: week}}})
		if a := resp.Responses["A"]; err != nil || a.Error == nil || !strings.Contains(a.Error.Error(), tc.want[0]) {
			t.Errorf("%s: QueryData = %v, %v; want an error response saying %q", tc.name, err, a.Error, tc.want[0])
		}
	}
}

// infoServer records the metadata of GetInfo calls.
type infoServer struct {
	op25bv1.UnimplementedDatasetServiceServer
	md chan metadata.MD
}

func (s *infoServer) GetInfo(ctx context.Context, _ *op25bv1.GetInfoRequest) (*op25bv1.GetInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.md <- md
	return &op25bv1.GetInfoResponse{SoftwareVersion: "v9", SchemaVersion: "1.0"}, nil
}

// The API token travels as a bearer credential; the server name given
// replaces the address's host in the certificate check.
func TestAPITokenAndServerName(t *testing.T) {
	cert, ca := selfSigned(t, "collector.example")
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	info := &infoServer{md: make(chan metadata.MD, 1)}
	op25bv1.RegisterDatasetServiceServer(srv, info)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	s := settings(ln.Addr().String(), map[string]string{"tlsCACert": ca, "apiToken": "s3cret"})
	s.JSONData = []byte(`{"address": "` + ln.Addr().String() + `", "serverName": "collector.example"}`)
	res := checkHealth(t, s)
	if res.Status != backend.HealthStatusOk || res.Message != "Connected to OP25B collector v9, dataset schema 1.0, refreshed never" {
		t.Fatalf("CheckHealth = %v %q", res.Status, res.Message)
	}
	if got := (<-info.md).Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("authorization %q; want Bearer s3cret", got)
	}
}

// selfSigned returns a certificate for name that is its own CA, and its
// PEM.
func selfSigned(t *testing.T, name string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
