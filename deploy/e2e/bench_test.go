package e2e_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
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

// BenchmarkIngestGRPC: agents, each its own connection, enrolled
// credential and upload stream, send batches of benchBatch results and
// wait for each acknowledgement: benchAgents of them, and four times as
// many, as when many agents drain their spools after an outage (the
// collector serves 100,000; group commit merges more of their batches).
func BenchmarkIngestGRPC(b *testing.B) {
	for _, n := range []int{benchAgents, 4 * benchAgents} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchGRPC(b, n) })
	}
}

func benchGRPC(b *testing.B, agents int) {
	c := collectortest.Start(b, api.Options{})
	c.Server.Converter.ASN = benchASN{}
	perProc := max(1, agents/runtime.GOMAXPROCS(0))
	uploaders := make(chan *uploader, perProc*runtime.GOMAXPROCS(0))
	for i := range cap(uploaders) {
		uploaders <- newUploader(b, c, i)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	b.SetParallelism(perProc)
	self := processCPU(b)
	cpu := postgresCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		u := <-uploaders
		var took []time.Duration
		for pb.Next() {
			u.fresh()
			sent := time.Now()
			if err := u.stream.SendMsg(collectortest.RawMessage(u.wire)); err != nil {
				b.Error(err)
				return
			}
			resp, err := u.stream.Recv()
			if err != nil || len(resp.AckedResultIds) != benchBatch {
				b.Errorf("ack: %v, %d acked, rejections %v", err, len(resp.GetAckedResultIds()), resp.GetRejections())
				return
			}
			took = append(took, time.Since(sent))
		}
		u.stream.CloseSend()
		mu.Lock()
		latencies = append(latencies, took...)
		mu.Unlock()
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "results/s")
	// The collector's CPU, and the agents' (next to nothing: their
	// batches are encoded before the timed loop), per result.
	b.ReportMetric(float64((processCPU(b)-self).Nanoseconds())/1000/float64(b.N*benchBatch), "go-cpu-us/result")
	reportPostgresCPU(b, cpu, b.N*benchBatch)
	// From sending a batch to its acknowledgement, after the COMMIT that
	// holds it: what group commit adds to each batch's wait.
	slices.Sort(latencies)
	if len(latencies) > 0 {
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "ack-p99-ms")
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "ack-p50-ms")
	}
}

// uploader is one agent of BenchmarkIngestGRPC, made before the timed
// loop: its connection, credential and upload stream, and its batch,
// encoded once. Each send gives the batch's results new ids by rewriting
// in place the last 12 hex digits of each (random bits of a UUIDv7: the
// time and version before them stay), so that the load generator, which
// in production runs on the agents' machines, takes next to nothing of
// the collector's CPU, as the limit harness's writers prepare their rows
// before the timed loop.
type uploader struct {
	stream grpc.BidiStreamingClient[op25bv1.UploadResultsRequest, op25bv1.UploadResultsResponse]
	wire   []byte
	tails  []int // offsets in wire of each result id's last 12 hex digits
	n      int   // this uploader's number
	sent   uint64
}

func newUploader(b *testing.B, c *collectortest.Collector, n int) *uploader {
	ctx := context.Background()
	conn := c.Dial(b)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	id, cred, err := c.Auth.Enroll(ctx, c.Token(b, auth.Agent, 1), auth.Agent, pub, "bench", "")
	if err != nil {
		b.Fatal(err)
	}
	stream, err := op25bv1.NewAgentServiceClient(conn).UploadResults(withBearer(ctx, cred), grpc.ForceCodecV2(collectortest.RawCodec{}))
	if err != nil {
		b.Fatal(err)
	}
	rs := benchResults(id)
	wire, err := proto.Marshal(&op25bv1.UploadResultsRequest{BatchId: 1, Results: rs})
	if err != nil {
		b.Fatal(err)
	}
	u := &uploader{stream: stream, wire: wire, n: n}
	from := 0 // the results are encoded in order
	for _, r := range rs {
		at := bytes.Index(wire[from:], []byte(r.ResultId))
		if at < 0 || len(r.ResultId) != 36 {
			b.Fatalf("result id %q not found in the encoded batch", r.ResultId)
		}
		from += at + len(r.ResultId)
		u.tails = append(u.tails, from-12)
	}
	return u
}

// fresh gives the batch's results ids no other send of the run has: the
// uploader's number and a count of its results.
func (u *uploader) fresh() {
	u.sent++
	for i, at := range u.tails {
		v := uint64(u.n)<<40 | (u.sent*benchBatch+uint64(i))&(1<<40-1)
		for d := 11; d >= 0; d-- {
			u.wire[at+d] = "0123456789abcdef"[v&15]
			v >>= 4
		}
	}
}

func BenchmarkIngestRawCopy(b *testing.B) { benchRawCopy(b, 64500, false) }

func BenchmarkIngestRawCopyUnattributed(b *testing.B) { benchRawCopy(b, 0, false) }

// BenchmarkIngestRawCopyNoExportIndex writes the same rows into results
// without the index of exports by ASN (0006_indexes.sql): what that one
// index costs ingest, in throughput and in PostgreSQL's CPU per result.
func BenchmarkIngestRawCopyNoExportIndex(b *testing.B) {
	benchRawCopy(b, 64500, false, dropExportIndex)
}

// BenchmarkIngestRawCopyThreeRefMTAs writes the same rows as rounds that
// probed three reference MTAs in three networks, as production does, so
// that every batch is compared across reference MTAs (store.chargedSQL);
// in one round of ten the third reference MTA disagrees and is charged.
func BenchmarkIngestRawCopyThreeRefMTAs(b *testing.B) { benchRawCopy(b, 64500, true) }

// storeRows returns n rows as ingest makes them of benchResults: what the
// store writes, evidence included. Made before the timed loop.
func storeRows(n int, asn uint32) []store.Result {
	var rows []store.Result
	for len(rows) < n {
		for _, pr := range benchResults("agent-bench") {
			_, at, _ := uuidv7.Parse(pr.ResultId)
			ev, _ := proto.Marshal(pr)
			rows = append(rows, store.Result{ID: pr.ResultId, MeasuredAt: at, AgentID: pr.AgentId, RefMTA: pr.RefmtaId, Port: 25,
				Family: 4, Verdict: 2, Failure: pr.Failure, Detail: pr.Detail, Nonce: pr.Nonce,
				Egress: netip.MustParseAddr("127.0.0.1"), EgressSource: store.EgressIngest,
				Prefix: netip.MustParsePrefix("127.0.0.0/24"), ASN: asn, Evidence: ev})
		}
	}
	return rows[:n]
}

// writerSets prepares, before the timed loop, one set of n rows for each
// of the benchAgents writers; edit, if not nil, changes writer w's set.
func writerSets(n int, asn uint32, edit func(w int, rows []store.Result)) chan []store.Result {
	sets := make(chan []store.Result, benchAgents)
	for w := range benchAgents {
		rows := storeRows(n, asn)
		if edit != nil {
			edit(w, rows)
		}
		sets <- rows
	}
	return sets
}

// freshIDs gives rows new result ids of their own times, so that a
// prepared set of rows can be written again as new results.
func freshIDs(rows []store.Result) {
	for i := range rows {
		rows[i].ID = uuidv7.New(rows[i].MeasuredAt)
	}
}

// The ingest limit harness: exactly the rows the store writes
// (store.CopyRows), prepared before the timed loop, written by 32
// concurrent writers in transactions of 200 rows (an agent's batch) and of
// 10,000 (what group commit reaches), (1) by COPY into an unindexed table
// of results' columns, the physical limit of moving them in, and (2) by the
// cheapest idempotent path: COPY into a temporary table kept per
// connection, then INSERT ... ON CONFLICT DO NOTHING into a partitioned
// table with results' primary key only. deploy/bench.sh reports the
// pipeline against (2) at 10,000 rows.
func BenchmarkIngestLimitCopy(b *testing.B) {
	for _, n := range []int{benchBatch, 10000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) { benchLimit(b, n, false) })
	}
}

func BenchmarkIngestLimitIdempotent(b *testing.B) {
	for _, n := range []int{benchBatch, 10000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) { benchLimit(b, n, true) })
	}
}

func benchLimit(b *testing.B, n int, idempotent bool) {
	st := storetest.New(b)
	ctx := context.Background()
	setup := "CREATE TABLE limit_copy (LIKE results INCLUDING DEFAULTS)"
	if idempotent {
		setup = `CREATE TABLE limit_copy (LIKE results INCLUDING DEFAULTS, PRIMARY KEY (result_id, measured_at)) PARTITION BY RANGE (measured_at);
			CREATE TABLE limit_copy_all PARTITION OF limit_copy FOR VALUES FROM ('2000-01-01') TO ('2100-01-01')`
	}
	if _, err := st.Pool.Exec(ctx, setup); err != nil {
		b.Fatal(err)
	}
	sets := writerSets(n, 64500, nil)
	b.SetParallelism(benchAgents / 2)
	cpu := postgresCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rows := <-sets
		for pb.Next() {
			// New ids (a UUIDv7 costs about what the agent paid) and the
			// conversion the store makes: the rest was prepared.
			freshIDs(rows)
			columns, values := store.CopyRows(rows)
			err := pgx.BeginFunc(ctx, st.Pool, func(tx pgx.Tx) error {
				if !idempotent {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"limit_copy"}, columns, pgx.CopyFromRows(values))
					return err
				}
				if _, err := tx.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS limit_staging (LIKE results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"); err != nil {
					return err
				}
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"limit_staging"}, columns, pgx.CopyFromRows(values)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO limit_copy SELECT * FROM limit_staging ON CONFLICT DO NOTHING")
				return err
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "results/s")
	reportPostgresCPU(b, cpu, b.N*n)
}

func benchRawCopy(b *testing.B, asn uint32, threeRefMTAs bool, setup ...func(*testing.B, *store.Store)) {
	st := storetest.New(b)
	for _, f := range setup {
		f(b, st)
	}
	// Rows prepared before the timed loop, as the limit harness's: the
	// store's own work is what is measured, not making test data.
	var threeNetworks func(w int, rows []store.Result)
	if threeRefMTAs {
		threeNetworks = func(w int, rows []store.Result) {
			for i := range rows {
				r := &rows[i]
				round := i / 3
				r.RoundID = fmt.Sprintf("writer-%d-round-%d", w, round)
				r.RefMTA = fmt.Sprintf("refmta-%d", i%3)
				r.RefMTAASN = uint32(64496 + i%3)
				if i%3 == 2 && round%10 == 0 {
					r.Verdict = 1
				}
			}
		}
	}
	sets := writerSets(benchBatch, asn, threeNetworks)
	b.SetParallelism(benchAgents / 2)
	cpu := postgresCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rows := <-sets
		for pb.Next() {
			freshIDs(rows)
			if _, err := st.InsertResults(context.Background(), rows); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "results/s")
	reportPostgresCPU(b, cpu, b.N*benchBatch)
}

func dropExportIndex(b *testing.B, st *store.Store) {
	if _, err := st.Pool.Exec(context.Background(), "DROP INDEX results_asn_family_port_measured_at_idx"); err != nil {
		b.Fatal(err)
	}
}

// postgresCPU returns the CPU time used so far by the test cluster's
// processes (the postmaster and its children: backends, WAL writer,
// checkpointer), or -1 when the tests use a server of their own.
func postgresCPU(b *testing.B) time.Duration {
	c := storetest.Cluster(b)
	if c == nil {
		return -1
	}
	pidFile, err := os.ReadFile(filepath.Join(c.Dir, "data", "postmaster.pid"))
	if err != nil {
		b.Fatal(err)
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		// Fields after the command, which may hold spaces: state, ppid, ...
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 || filepath.Base(filepath.Dir(p)) != postmaster && f[1] != postmaster {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

// reportPostgresCPU reports PostgreSQL's CPU per result since before.
func reportPostgresCPU(b *testing.B, before time.Duration, results int) {
	if before < 0 || results == 0 {
		return
	}
	b.ReportMetric(float64((postgresCPU(b)-before).Nanoseconds())/1000/float64(results), "pg-cpu-us/result")
}

// processCPU returns the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
