package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// The ingest benchmarks compare the whole path (agents streaming batches
// over gRPC with TLS, validation, attribution, COPY + INSERT ... ON
// CONFLICT, acknowledgement) with its raw limit: the same rows written by
// store.InsertResults directly, with the same concurrency, in the same run.
// Every result is attributed to one ASN, so ingest also maintains the
// dataset's tallies, as in production; BenchmarkIngestRawCopyUnattributed
// writes the same rows without an ASN (no tallies) to show what that costs.
// deploy/bench.sh turns them into BENCHMARKS.md rows.

const (
	benchBatch  = 200
	benchAgents = 32
)

func benchResults(agentID string) []*op25bv1.ProbeResult {
	rs := make([]*op25bv1.ProbeResult, benchBatch)
	for i := range rs {
		at := time.Now()
		rs[i] = &op25bv1.ProbeResult{ResultId: uuidv7.New(at), AgentId: agentID, RefmtaId: "refmta-x", Port: 25,
			Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT,
			StartedAt: timestamppb.New(at), Failure: "timeout", Detail: "the connection attempt got no answer within 10s",
			Nonce: make([]byte, 16)}
	}
	return rs
}

// benchASN attributes every address to one ASN.
type benchASN struct{}

func (benchASN) Attribute(netip.Addr, time.Time) ingest.Attribution {
	return ingest.Attribution{ASN: 64500}
}

func BenchmarkIngestGRPC(b *testing.B) {
	c := collectortest.Start(b, api.Options{})
	c.Server.Converter.ASN = benchASN{}
	conn := c.Dial(b)
	var next atomic.Int64
	b.SetParallelism(benchAgents / 2) // GOMAXPROCS=2: benchAgents streams
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		// Each goroutine is one agent: its own credential and stream.
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		id, cred, err := c.Auth.Enroll(ctx, c.Token(b, auth.Agent, 1), auth.Agent, pub, "bench", "")
		if err != nil {
			b.Error(err)
			return
		}
		ctx = withBearer(ctx, cred)
		stream, err := op25bv1.NewAgentServiceClient(conn).UploadResults(ctx)
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			rs := benchResults(id)
			if err := stream.Send(&op25bv1.UploadResultsRequest{BatchId: uint64(next.Add(1)), Results: rs}); err != nil {
				b.Error(err)
				return
			}
			resp, err := stream.Recv()
			if err != nil || len(resp.AckedResultIds) != benchBatch {
				b.Errorf("ack: %v, %d acked", err, len(resp.GetAckedResultIds()))
				return
			}
		}
		stream.CloseSend()
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "results/s")
}

func BenchmarkIngestRawCopy(b *testing.B) { benchRawCopy(b, 64500, false) }

func BenchmarkIngestRawCopyUnattributed(b *testing.B) { benchRawCopy(b, 0, false) }

// BenchmarkIngestRawCopyThreeRefMTAs writes the same rows as rounds that
// probed three reference MTAs in three networks, as production does, so
// that every batch is compared across reference MTAs (store.chargedSQL);
// in one round of ten the third reference MTA disagrees and is charged.
func BenchmarkIngestRawCopyThreeRefMTAs(b *testing.B) { benchRawCopy(b, 64500, true) }

func benchRawCopy(b *testing.B, asn uint32, threeRefMTAs bool) {
	st := storetest.New(b)
	b.SetParallelism(benchAgents / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			prs := benchResults("agent-bench")
			rows := make([]store.Result, len(prs))
			for i, pr := range prs {
				_, at, _ := uuidv7.Parse(pr.ResultId)
				ev, _ := proto.Marshal(pr)
				rows[i] = store.Result{ID: pr.ResultId, MeasuredAt: at, AgentID: pr.AgentId, RefMTA: pr.RefmtaId, Port: 25,
					Family: 4, Verdict: 2, Failure: pr.Failure, Detail: pr.Detail, Nonce: pr.Nonce,
					Egress: netip.MustParseAddr("127.0.0.1"), EgressSource: store.EgressIngest,
					Prefix: netip.MustParsePrefix("127.0.0.0/24"), ASN: asn, Evidence: ev}
				if threeRefMTAs {
					r := &rows[i]
					round := i / 3
					r.RoundID = fmt.Sprintf("%s-%d", prs[round*3].ResultId, round)
					r.RefMTA = fmt.Sprintf("refmta-%d", i%3)
					r.RefMTAASN = uint32(64496 + i%3)
					if i%3 == 2 && round%10 == 0 {
						r.Verdict = 1
					}
				}
			}
			if _, err := st.InsertResults(context.Background(), rows); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "results/s")
}
