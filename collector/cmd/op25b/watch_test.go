package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/datasetclient/datasetclienttest"
	"github.com/op25b/observatory/collector/stream"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// syncBuffer is written by the command while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watchFake runs op25b watch against the fake until it has printed lines
// lines after publish ran, then interrupts it as Ctrl-C would.
func watchFake(t *testing.T, lines int, publish func(*stream.Broker), args ...string) string {
	t.Helper()
	s := datasetclienttest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, append([]string{"watch", "--collector", s.URL}, args...), &out, &errOut) }()
	deadline := time.Now().Add(10 * time.Second)
	for stream.Held(s.Stream) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("op25b watch never subscribed; stderr %q", errOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	publish(s.Stream)
	for strings.Count(out.String(), "\n") < lines {
		if time.Now().After(deadline) {
			t.Fatalf("op25b watch printed %q; want %d lines", out.String(), lines)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK || errOut.String() != "" {
		t.Errorf("op25b watch = %d, stderr %q; want 0 and nothing", code, errOut.String())
	}
	return out.String()
}

func publishSample(b *stream.Broker) {
	at := timestamppb.New(time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC))
	result := func(asn uint32, port uint32, v pb.Verdict, failure string) *pb.StreamResponse {
		return &pb.StreamResponse{Event: &pb.StreamResponse_Result{Result: &pb.PublicResult{MeasuredAt: at, Asn: asn, Country: "JP",
			Prefix: "198.51.100.0/24", Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, Port: port, Verdict: v, Failure: failure, RefmtaId: "refmta-tokyo"}}}
	}
	b.Publish(
		result(64500, 25, pb.Verdict_VERDICT_BLOCKED_TIMEOUT, "timeout"),
		result(64501, 25, pb.Verdict_VERDICT_OPEN, ""),
		result(64500, 587, pb.Verdict_VERDICT_OPEN, ""),
		&pb.StreamResponse{Event: &pb.StreamResponse_Change{Change: &pb.PolicyChange{Asn: 64500, Country: "JP",
			Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4, FromClass: pb.PolicyClass_POLICY_CLASS_OPEN, ToClass: pb.PolicyClass_POLICY_CLASS_OP25B,
			ChangedAt: timestamppb.New(time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC))}}},
	)
}

func TestWatchTable(t *testing.T) {
	out := watchFake(t, 3, publishSample, "--asn", "AS64500")
	golden(t, "watch.txt", out)
	if strings.Contains(out, "AS64501") {
		t.Errorf("--asn 64500 printed another ASN:\n%s", out)
	}
}

func TestWatchJSONFiltered(t *testing.T) {
	// Port and verdict select results; the change passes.
	out := watchFake(t, 3, publishSample, "--port", "25", "--verdict", "blocked_timeout,open", "--format", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"verdict":"VERDICT_BLOCKED_TIMEOUT"`) || !strings.Contains(lines[1], `"asn":64501`) ||
		!strings.Contains(lines[2], `"change":`) {
		t.Errorf("op25b watch --port 25 --format json printed\n%s", out)
	}
}

func TestWatchUsage(t *testing.T) {
	for _, args := range [][]string{{"--port", "26"}, {"--verdict", "MAYBE"}, {"--format", "csv"}, {"--country", "JPN"}} {
		if code, _, _ := runCmd(t, append([]string{"watch", "--collector", "http://127.0.0.1:1"}, args...)...); code != exitUsage {
			t.Errorf("op25b watch %q = %d; want %d", args, code, exitUsage)
		}
	}
}
