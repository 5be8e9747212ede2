package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/collectortest/fixturewire"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The protocol as the plugin's tests speak it: the greeting names the
// seeded world; a started collector answers over gRPC with TLS from the CA
// given, the seeded one on the world's clock; stored results reach its
// database; a request that cannot be served says why, and the fixture
// goes on.
func TestProtocol(t *testing.T) {
	storetest.Cluster(t) // skips, or fails under OP25B_REQUIRE_ALL=1, without PostgreSQL
	requests := make(chan []byte)
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(requests, nil, json.NewEncoder(outW), slog.New(slog.DiscardHandler))
		outW.Close()
	}()
	dec := json.NewDecoder(outR)
	read := func() fixturewire.Response {
		t.Helper()
		var r fixturewire.Response
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ask := func(req string) fixturewire.Response {
		t.Helper()
		requests <- []byte(req)
		return read()
	}

	hello := read()
	if w := hello.World; w == nil || !w.Now.Equal(datasettest.Now) || len(w.ASNs) != len(datasettest.ASNs) || len(w.Addresses) == 0 {
		t.Fatalf("greeting %+v; want the seeded world", hello)
	}
	seeded := ask(`{"start": {"seeded": true}}`).Collector
	streaming := ask(`{"start": {"stream": true}}`).Collector
	if seeded == nil || streaming == nil || seeded.ID != 1 || streaming.ID != 2 {
		t.Fatalf("collectors %+v and %+v; want ids 1 and 2", seeded, streaming)
	}
	ca := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(ca, []byte(seeded.CACert), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err := collectorclient.Dial([]string{seeded.Addr}, ca)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := op25bv1.NewDatasetServiceClient(conn).GetInfo(context.Background(), &op25bv1.GetInfoRequest{})
	if err != nil || !info.GetRefreshedAt().AsTime().Equal(datasettest.Now) {
		t.Errorf("GetInfo of the seeded collector = %v, %v; want it refreshed at %v", info, err, datasettest.Now)
	}

	if r := ask(`{"held": {"id": 2}}`); r.Held == nil || *r.Held != 0 {
		t.Errorf("held = %+v; want 0", r)
	}
	if r := ask(`{"insert": {"id": 2, "results": [{"asn": 64500, "port": 25, "verdict": "BLOCKED_RESET", "prefix": "192.0.2.0/24", "refmta": "r"},
		{"asn": 64500, "port": 587, "verdict": "OPEN", "prefix": "2001:db8::/48", "refmta": "r"}]}}`); r.Inserted == nil || *r.Inserted != 2 {
		t.Errorf("insert = %+v; want 2 inserted", r)
	}
	if r := ask(`{"change": {"id": 2, "asn": 64500, "family": 4, "day": "2026-03-08", "from": "OPEN", "to": "OP25B"}}`); r.Error != "" {
		t.Errorf("change: %s", r.Error)
	}
	for req, want := range map[string]string{
		`{"held": {"id": 1}}`: "collector 1 does not stream",
		`{"held": {"id": 3}}`: "no collector 3",
		`{"insert": {"id": 2, "results": [{"asn": 1, "port": 25, "verdict": "SPAMMY", "prefix": "192.0.2.0/24"}]}}`: "SPAMMY",
		`{"change": {"id": 2, "asn": 1, "family": 4, "day": "2026-03-08", "from": "SPAMMY", "to": "OPEN"}}`:         "SPAMMY",
		`{"stop": {}}`: "unknown request",
		`not json`:     "invalid character",
	} {
		if r := ask(req); !strings.Contains(r.Error, want) {
			t.Errorf("%s answered %+v; want an error saying %q", req, r, want)
		}
	}

	close(requests)
	if err := <-done; err != nil {
		t.Errorf("run after stdin closed = %v", err)
	}
}
