package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{}, "data": &grpcplugin.DataGRPCPlugin{},
			"stream": &grpcplugin.StreamGRPCPlugin{}}},
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

// Grafana Live over the plugin protocol, driven as Grafana drives it: it
// asks SubscribeStream whether a panel may watch a channel, runs RunStream
// for the channel while the channel has subscribers and publishes each
// packet on it, and cancels RunStream when the last one leaves. Results
// the collector stores meanwhile arrive as frames on the channel of their
// ASN and port, the ASN's policy change on its changes channel, and a
// cancelled stream lets its subscription to the collector go.
func TestExecutableStream(t *testing.T) {
	c := collectorfixture.Start(t, collectorfixture.Options{Stream: true})
	streams := dispense[grpcplugin.StreamClient](t, start(t), "stream")
	pctx := backend.ToProto().PluginContext(pluginContext(c, time.Now()))

	for path, want := range map[string]pluginv2.SubscribeStreamResponse_Status{
		"results/64500/port=25":  pluginv2.SubscribeStreamResponse_OK,
		"changes/64500":          pluginv2.SubscribeStreamResponse_OK,
		"results/64500/port=443": pluginv2.SubscribeStreamResponse_NOT_FOUND,
		"agents/64500":           pluginv2.SubscribeStreamResponse_NOT_FOUND,
	} {
		resp, err := streams.SubscribeStream(context.Background(), &pluginv2.SubscribeStreamRequest{PluginContext: pctx, Path: path})
		if err != nil || resp.GetStatus() != want {
			t.Errorf("SubscribeStream(%q) = %v, %v; want %v", path, resp.GetStatus(), err, want)
		}
	}

	results := runStream(t, streams, pctx, "results/64500/port=25")
	changes := runStream(t, streams, pctx, "changes/64500")
	c.WaitHeld(t, 2) // both streams subscribed to the collector
	c.Insert(t,
		collectorfixture.Result{ASN: 64500, Port: 25, Verdict: "BLOCKED_TIMEOUT", Prefix: "198.51.100.0/24", Failure: "timeout", RefMTA: "refmta-tokyo"},
		collectorfixture.Result{ASN: 64500, Port: 587, Verdict: "OPEN", Prefix: "198.51.100.0/24", RefMTA: "refmta-tokyo"},
		collectorfixture.Result{ASN: 64501, Port: 25, Verdict: "OPEN", Prefix: "203.0.113.0/24", RefMTA: "refmta-tokyo"},
		collectorfixture.Result{ASN: 64500, Port: 25, Verdict: "OPEN", Prefix: "192.0.2.0/24", RefMTA: "refmta-osaka"},
	)
	var got []string
	for range 2 {
		f := results.next(t)
		if f.Rows() != 1 || len(f.Fields) != 7 {
			t.Fatalf("results/64500/port=25 sent a frame of %d rows and %d fields; want one row of 7", f.Rows(), len(f.Fields))
		}
		got = append(got, fmt.Sprint(f.At(1, 0), " ", f.At(2, 0), " ", f.At(3, 0), " ", f.At(4, 0), " ", f.At(5, 0), " ", f.At(6, 0)))
		if at := f.At(0, 0).(time.Time); time.Since(at).Abs() > time.Minute {
			t.Errorf("result measured at %v; want about now", at)
		}
	}
	want := []string{"198.51.100.0/24 ipv4 25 BLOCKED_TIMEOUT timeout refmta-tokyo", "192.0.2.0/24 ipv4 25 OPEN  refmta-osaka"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results/64500/port=25 sent\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Grafana cancels the results channel's stream: the collector lets
	// its subscription go, the changes channel's stays.
	if err := results.stop(t); status.Code(err) != codes.Canceled {
		t.Errorf("RunStream %s after Grafana cancelled it: %v; want Canceled", results.path, err)
	}
	c.WaitHeld(t, 1)
	c.Change(t, collectorfixture.Change{ASN: 64500, Family: 4, Day: "2026-03-08", From: "OPEN", To: "OP25B"})
	if f := changes.next(t); f.Rows() != 1 || f.At(1, 0) != "ipv4" || f.At(2, 0) != "OPEN" || f.At(3, 0) != "OP25B" || f.At(4, 0) != false {
		t.Errorf("changes/64500 sent a frame of %d rows; want one: ipv4 from OPEN to OP25B", f.Rows())
	}
	if err := changes.stop(t); status.Code(err) != codes.Canceled {
		t.Errorf("RunStream %s after Grafana cancelled it: %v; want Canceled", changes.path, err)
	}
	c.WaitHeld(t, 0)
	for _, s := range []*liveStream{results, changes} {
		if len(s.frames) != 0 {
			t.Errorf("%s sent %d frames more than it should have", s.path, len(s.frames))
		}
	}
}

// liveStream is one RunStream call, its packets decoded as frames.
type liveStream struct {
	path   string
	frames chan *data.Frame
	errc   chan error
	cancel context.CancelFunc
}

func runStream(t *testing.T, streams grpcplugin.StreamClient, pctx *pluginv2.PluginContext, path string) *liveStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rs, err := streams.RunStream(ctx, &pluginv2.RunStreamRequest{PluginContext: pctx, Path: path})
	if err != nil {
		t.Fatalf("RunStream %s: %v", path, err)
	}
	s := &liveStream{path: path, frames: make(chan *data.Frame, 100), errc: make(chan error, 1), cancel: cancel}
	go s.recv(rs)
	return s
}

func (s *liveStream) recv(rs grpc.ServerStreamingClient[pluginv2.StreamPacket]) {
	for {
		p, err := rs.Recv()
		if err != nil {
			s.errc <- err
			return
		}
		f := &data.Frame{}
		if err := json.Unmarshal(p.GetData(), f); err != nil {
			s.errc <- fmt.Errorf("packet %q: %w", p.GetData(), err)
			return
		}
		s.frames <- f
	}
}

func (s *liveStream) next(t *testing.T) *data.Frame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case err := <-s.errc:
		t.Fatalf("RunStream %s ended: %v", s.path, err)
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for a frame on %s", s.path)
	}
	return nil
}

// stop cancels the call, as Grafana does when the channel's last
// subscriber leaves, and returns how it ended.
func (s *liveStream) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("RunStream %s did not end after its context was cancelled", s.path)
		return nil
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
