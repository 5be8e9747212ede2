package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/dashboard/pkg/internal/collectorfixture"
)

// streaming starts a collector that serves the live stream over a fresh
// database, and returns the settings of a data source that uses it.
func streaming(t *testing.T) (backend.DataSourceInstanceSettings, *collectorfixture.Collector) {
	t.Helper()
	c := collectorfixture.Start(t, collectorfixture.Options{Stream: true})
	return settings(c.Addr, map[string]string{"tlsCACert": c.CACert}), c
}

// result is a result of asn on port with verdict, from prefix.
func result(asn uint32, port uint16, verdict, prefix string) collectorfixture.Result {
	return collectorfixture.Result{ASN: asn, Port: port, Verdict: verdict, Prefix: prefix, Failure: "timeout", RefMTA: "refmta-tokyo"}
}

// frames is a StreamPacketSender that decodes each packet as a frame.
type frames chan *data.Frame

func (c frames) Send(p *backend.StreamPacket) error {
	f := &data.Frame{}
	if err := json.Unmarshal(p.Data, f); err != nil {
		return err
	}
	c <- f
	return nil
}

func (c frames) next(t *testing.T) *data.Frame {
	t.Helper()
	select {
	case f := <-c:
		return f
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for a frame")
		return nil
	}
}

// runStream runs d.RunStream for path in the background; stop cancels it
// and returns what it returned.
func runStream(t *testing.T, d *Datasource, path string) (frames, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(frames, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- d.RunStream(ctx, &backend.RunStreamRequest{Path: path}, backend.NewStreamSender(out))
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("RunStream %s did not return after its context was cancelled", path)
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return out, stop
}

// Results stored while a live channel runs arrive as frames of one row,
// only those of the channel's ASN and port; a change of the ASN arrives on
// its changes channel; both stop when Grafana cancels them.
func TestRunStream(t *testing.T) {
	s, c := streaming(t)
	d := open(t, s)
	results, stopResults := runStream(t, d, "results/64500/port=25")
	changes, stopChanges := runStream(t, d, "changes/64500")
	c.WaitHeld(t, 2) // both streams subscribed

	c.Insert(t,
		result(64500, 25, "BLOCKED_TIMEOUT", "198.51.100.0/24"),
		result(64500, 587, "OPEN", "198.51.100.0/24"),
		result(64501, 25, "OPEN", "203.0.113.0/24"),
		result(64500, 25, "OPEN", "192.0.2.0/24"), // last: nothing may follow it
	)
	var got []string
	for len(got) < 2 {
		f := results.next(t)
		if f.Rows() != 1 || len(f.Fields) != 7 {
			t.Fatalf("frame:\n%v\nwant one row of 7 fields", dump(f))
		}
		row := fmt.Sprint(f.At(1, 0), " ", f.At(2, 0), " ", f.At(3, 0), " ", f.At(4, 0), " ", f.At(5, 0), " ", f.At(6, 0))
		got = append(got, row)
		if at := f.At(0, 0).(time.Time); time.Until(at).Abs() > time.Minute {
			t.Errorf("row %s measured at %v; want about now", row, at)
		}
	}
	want := []string{"198.51.100.0/24 ipv4 25 BLOCKED_TIMEOUT timeout refmta-tokyo", "192.0.2.0/24 ipv4 25 OPEN timeout refmta-tokyo"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results/64500/port=25 sent\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A policy change of AS64500, logged as the refresh does.
	c.Change(t, collectorfixture.Change{ASN: 64500, Family: 4, Day: "2026-03-08", From: "OPEN", To: "OP25B"})
	f := changes.next(t)
	if f.Rows() != 1 || f.At(1, 0) != "ipv4" || f.At(2, 0) != "OPEN" || f.At(3, 0) != "OP25B" || f.At(4, 0) != false {
		t.Errorf("changes/64500 sent\n%v\nwant ipv4 OPEN to OP25B", dump(f))
	}

	for path, stop := range map[string]func() error{"results": stopResults, "changes": stopChanges} {
		if err := stop(); err != nil {
			t.Errorf("RunStream %s = %v after cancel; want nil", path, err)
		}
	}
	c.WaitHeld(t, 0) // the collector let both subscriptions go
	select {
	case f := <-changes:
		t.Errorf("changes/64500 sent a result:\n%v", dump(f))
	default:
	}
}

// A collector that cannot stream (one older than schema 1.6) ends
// RunStream with its reason rather than a loop of retries.
func TestRunStreamUnimplemented(t *testing.T) {
	c := collectorfixture.Start(t, collectorfixture.Options{})
	d := open(t, settings(c.Addr, map[string]string{"tlsCACert": c.CACert}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.RunStream(ctx, &backend.RunStreamRequest{Path: "results/64500"}, backend.NewStreamSender(make(frames, 1)))
	if err == nil || status.Code(errors.Unwrap(err)) != codes.Unimplemented {
		t.Errorf("RunStream against a collector without the stream = %v; want Unimplemented", err)
	}
}

func TestSubscribeStream(t *testing.T) {
	d := open(t, settings("127.0.0.1:9", nil)) // never dialled
	for _, tc := range []struct {
		path string
		want backend.SubscribeStreamStatus
	}{
		{"results/64500", backend.SubscribeStreamStatusOK},
		{"results/AS64500/port=587/verdict=OPEN/verdict=BLOCKED_RESET", backend.SubscribeStreamStatusOK},
		{"changes/64500", backend.SubscribeStreamStatusOK},
		{"results", backend.SubscribeStreamStatusNotFound},
		{"results/0", backend.SubscribeStreamStatusNotFound},
		{"results/ASX", backend.SubscribeStreamStatusNotFound},
		{"results/64500/port=443", backend.SubscribeStreamStatusNotFound},
		{"results/64500/verdict=SPAMMY", backend.SubscribeStreamStatusNotFound},
		{"changes/64500/port=25", backend.SubscribeStreamStatusNotFound},
		{"agents/64500", backend.SubscribeStreamStatusNotFound},
	} {
		resp, err := d.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: tc.path})
		if err != nil || resp.Status != tc.want {
			t.Errorf("SubscribeStream(%q) = %v, %v; want %v", tc.path, resp.Status, err, tc.want)
		}
	}
	resp, err := d.PublishStream(context.Background(), &backend.PublishStreamRequest{Path: "results/64500", Data: []byte(`{}`)})
	if err != nil || resp.Status != backend.PublishStreamStatusPermissionDenied {
		t.Errorf("PublishStream = %v, %v; want permission denied", resp.Status, err)
	}
}

// The live query answers an empty frame of the streamed schema whose
// channel is the data source's for the query's ASN and filters.
func TestLiveQuery(t *testing.T) {
	d := open(t, settings("127.0.0.1:9", nil))
	rs := run(t, d, `{"queryType": "live", "asn": "AS64500"}`, `{"queryType": "live", "asn": 64500, "port": 587, "verdicts": ["open", "BLOCKED_RESET"]}`,
		`{"queryType": "live"}`, `{"queryType": "live", "asn": 64500, "verdicts": ["SPAMMY"]}`)
	for ref, want := range map[string]string{"A": "ds/op25b/results/64500", "B": "ds/op25b/results/64500/port=587/verdict=OPEN/verdict=BLOCKED_RESET"} {
		dr := rs[ref]
		if dr.Error != nil || len(dr.Frames) != 1 {
			t.Fatalf("%s: %v, %d frames", ref, dr.Error, len(dr.Frames))
		}
		f := dr.Frames[0]
		if f.Meta == nil || f.Meta.Channel != want || f.Rows() != 0 || f.RefID != ref {
			t.Errorf("%s: channel %v, %d rows; want %s and none", ref, f.Meta, f.Rows(), want)
		}
		var names []string
		for _, fd := range f.Fields {
			names = append(names, fd.Name)
		}
		if got := strings.Join(names, ","); got != "time,prefix,family,port,verdict,failure,refmta" {
			t.Errorf("%s: fields %s", ref, got)
		}
		c, err := parseChannel(strings.TrimPrefix(want, "ds/op25b/"))
		if err != nil || c.path() != strings.TrimPrefix(want, "ds/op25b/") {
			t.Errorf("%s: the channel's path does not parse back: %v", ref, err)
		}
	}
	for ref, want := range map[string]string{"C": "needs an ASN", "D": `unknown verdict "SPAMMY"`} {
		if dr := rs[ref]; dr.Status != backend.StatusBadRequest || dr.Error == nil || !strings.Contains(dr.Error.Error(), want) {
			t.Errorf("%s: %d %v; want 400 %q", ref, dr.Status, dr.Error, want)
		}
	}
}
