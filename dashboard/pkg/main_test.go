package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/op25b/observatory/dashboard/pkg/internal/collectorfixture"
	"github.com/op25b/observatory/dashboard/pkg/internal/testenv"
)

func TestMain(m *testing.M) { collectorfixture.Main(m) }

// start builds the executable and starts it the way Grafana starts a
// backend plugin: hashicorp/go-plugin's handshake, protocol 2, gRPC,
// without the host's environment. It is killed when the test ends.
func start(t *testing.T) goplugin.ClientProtocol {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Unavailable(t, "no go command to build the plugin executable: "+err.Error())
	}
	bin := filepath.Join(t.TempDir(), "gpx_op25b")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{ProtocolVersion: grpcplugin.ProtocolVersion,
			MagicCookieKey: grpcplugin.MagicCookieKey, MagicCookieValue: grpcplugin.MagicCookieValue},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{}, "data": &grpcplugin.DataGRPCPlugin{}}},
		Cmd:              exec.Command(bin),
		SkipHostEnv:      true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "gpx_op25b", Output: t.Output(), Level: hclog.Warn}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake: %v", err)
	}
	return rpc
}

// pluginContext is what Grafana sends with each call for a data source
// that uses c.
func pluginContext(c *collectorfixture.Collector, updated time.Time) backend.PluginContext {
	return backend.PluginContext{PluginID: "op25b-observatory-datasource",
		DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{ID: 1, UID: "op25b", Name: "OP25B", Updated: updated,
			JSONData:                fmt.Appendf(nil, `{"address": %q}`, c.Addr),
			DecryptedSecureJSONData: map[string]string{"tlsCACert": c.CACert}}}
}

// The built executable, asked over the plugin protocol, against a real
// collector over the seeded world.
func TestExecutable(t *testing.T) {
	c, w := collectorfixture.Seeded(t)
	rpc := start(t)
	diagnostics := dispense[grpcplugin.DiagnosticsClient](t, rpc, "diagnostics")
	data := dispense[grpcplugin.DataClient](t, rpc, "data")

	pctx := pluginContext(c, w.Now)
	ctx := context.Background()
	health, err := diagnostics.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pctx)})
	if want := "Connected to OP25B collector dev, dataset schema " + w.SchemaVersion + ", refreshed 2026-03-10T12:00:00Z"; err != nil ||
		health.GetStatus() != pluginv2.CheckHealthResponse_OK || health.GetMessage() != want {
		t.Errorf("CheckHealth = %v, %v; want OK %q", health, err, want)
	}

	week := backend.TimeRange{From: w.Now.Add(-7 * 24 * time.Hour), To: w.Now}
	req := &backend.QueryDataRequest{PluginContext: pctx, Queries: []backend.DataQuery{
		{RefID: "A", JSON: []byte(`{"queryType": "asns"}`), TimeRange: week},
		{RefID: "B", JSON: []byte(`{"queryType": "timeline", "asn": 64501}`), TimeRange: week},
		{RefID: "C", JSON: []byte(`{"queryType": "nonsense"}`), TimeRange: week},
	}}
	raw, err := data.QueryData(ctx, backend.ToProto().QueryDataRequest(req))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	resp, err := backend.FromProto().QueryDataResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	asns := resp.Responses["A"]
	if asns.Error != nil || len(asns.Frames) != 1 || asns.Frames[0].Rows() != 8 {
		t.Fatalf("asns: %v, %v; want 8 rows", asns.Error, asns.Frames)
	}
	if f := asns.Frames[0]; f.At(0, 3) != uint32(64502) || f.At(4, 3) != "INTERCEPT" {
		t.Errorf("asns row 3: AS%v %v; want AS64502 INTERCEPT", f.At(0, 3), f.At(4, 3))
	}
	// Across the plugin protocol the frames are those of the in-process
	// golden tests, whose queries are all A.
	for refID, golden := range map[string]string{"A": "asns", "B": "timeline"} {
		dr := resp.Responses[refID]
		for _, f := range dr.Frames {
			f.RefID = "A"
		}
		experimental.CheckGoldenJSONResponse(t, "plugin/testdata", golden, &dr, false)
	}
	if bad := resp.Responses["C"]; bad.Error == nil || bad.Status != backend.StatusBadRequest {
		t.Errorf("unknown query type: %d %v; want a 400 error response", bad.Status, bad.Error)
	}
}

func dispense[T any](t *testing.T, rpc goplugin.ClientProtocol, name string) T {
	t.Helper()
	raw, err := rpc.Dispense(name)
	if err != nil {
		t.Fatalf("dispense %s: %v", name, err)
	}
	c, ok := raw.(T)
	if !ok {
		t.Fatalf("dispense %s: got %T", name, raw)
	}
	return c
}
