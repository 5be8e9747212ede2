package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type env struct {
	store *store.Store
	auth  *auth.Service
	conn  *grpc.ClientConn
}

func start(t *testing.T, o api.Options) *env {
	t.Helper()
	c := collectortest.Start(t, o)
	c.SetSchedule(&op25bv1.Schedule{})
	return &env{store: c.Store, auth: c.Auth, conn: c.Dial(t)}
}

// enroll enrolls an agent and returns a context carrying its credential.
func (e *env) enroll(t *testing.T) (context.Context, string) {
	t.Helper()
	ctx := context.Background()
	_, secret, err := e.auth.CreateToken(ctx, "test", auth.Agent, time.Now().Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	resp, err := op25bv1.NewEnrollmentServiceClient(e.conn).Enroll(ctx, &op25bv1.EnrollRequest{Token: secret,
		Kind: op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, PublicKey: pub, Label: "test agent"})
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+resp.Credential), resp.PrincipalId
}

func batch(n int) []*op25bv1.ProbeResult {
	var rs []*op25bv1.ProbeResult
	for i := 0; i < n; i++ {
		at := time.Now().Add(-time.Duration(i) * time.Second)
		rs = append(rs, &op25bv1.ProbeResult{ResultId: uuidv7.New(at), RefmtaId: "refmta-x", Port: 25,
			Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT,
			StartedAt: timestamppb.New(at)})
	}
	return rs
}

func upload(t *testing.T, ctx context.Context, conn *grpc.ClientConn, rs []*op25bv1.ProbeResult) (*op25bv1.UploadResultsResponse, error) {
	t.Helper()
	stream, err := op25bv1.NewAgentServiceClient(conn).UploadResults(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&op25bv1.UploadResultsRequest{BatchId: 1, Results: rs}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	stream.CloseSend()
	return resp, err
}

func TestReplayedBatchStoredOnce(t *testing.T) {
	e := start(t, api.Options{})
	ctx, agent := e.enroll(t)
	rs := batch(100)
	bad := batch(1)[0]
	bad.Verdict = 42
	for i := 0; i < 3; i++ {
		resp, err := upload(t, ctx, e.conn, append(rs, bad))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		if len(resp.AckedResultIds) != 100 || len(resp.Rejections) != 1 || !strings.Contains(resp.Rejections[0].Reason, "invalid verdict") {
			t.Fatalf("upload %d: %d acked, rejections %v; want 100 and one invalid verdict", i, len(resp.AckedResultIds), resp.Rejections)
		}
	}
	var n int
	var who string
	e.store.Pool.QueryRow(ctx, "SELECT count(*), min(agent_id) FROM results").Scan(&n, &who)
	if n != 100 || who != agent {
		t.Errorf("stored %d results of %q after 3 replays; want 100 of %q", n, who, agent)
	}
	// Attributed to the ingest connection: no statement in these results.
	var src int
	var egress string
	e.store.Pool.QueryRow(ctx, "SELECT min(egress_source), host(min(egress)) FROM results").Scan(&src, &egress)
	if src != int(store.EgressIngest) || egress != "127.0.0.1" {
		t.Errorf("egress = %s from source %d; want 127.0.0.1 from the ingest connection", egress, src)
	}
}

func TestRefusals(t *testing.T) {
	e := start(t, api.Options{MaxRecvMsgSize: 64 << 10})
	ctx, agent := e.enroll(t)
	client := op25bv1.NewAgentServiceClient(e.conn)
	code := func(ctx context.Context) codes.Code {
		_, err := client.GetSchedule(ctx, &op25bv1.GetScheduleRequest{})
		return status.Code(err)
	}
	bg := context.Background()
	if c := code(bg); c != codes.Unauthenticated {
		t.Errorf("no credential: %v; want Unauthenticated", c)
	}
	if c := code(metadata.AppendToOutgoingContext(bg, "authorization", "Bearer agent-x.nonsense")); c != codes.Unauthenticated {
		t.Errorf("wrong credential: %v; want Unauthenticated", c)
	}
	if c := code(ctx); c != codes.OK {
		t.Errorf("good credential: %v; want OK", c)
	}
	huge := batch(1)
	huge[0].Detail = strings.Repeat("x", 128<<10)
	if _, err := upload(t, ctx, e.conn, huge); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized message: %v; want ResourceExhausted", err)
	}
	// An agent may not call the reference MTAs' service.
	stream, err := op25bv1.NewRefMTAServiceClient(e.conn).UploadSightings(ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("agent uploading sightings: %v; want PermissionDenied", err)
	}
	if err := e.auth.Revoke(bg, agent); err != nil {
		t.Fatal(err)
	}
	if c := code(ctx); c != codes.PermissionDenied {
		t.Errorf("revoked credential: %v; want PermissionDenied", c)
	}
}

func TestSchedule(t *testing.T) {
	e := start(t, api.Options{})
	ctx, _ := e.enroll(t)
	client := op25bv1.NewAgentServiceClient(e.conn)
	resp, err := client.GetSchedule(ctx, &op25bv1.GetScheduleRequest{})
	v := resp.GetSchedule().GetVersion()
	if err != nil || len(v) != 16 {
		t.Fatalf("GetSchedule = %v, %v", resp, err)
	}
	resp, err = client.GetSchedule(ctx, &op25bv1.GetScheduleRequest{CurrentVersion: v})
	if err != nil || !resp.Unchanged || resp.Schedule != nil {
		t.Errorf("GetSchedule(current) = %v, %v; want unchanged", resp, err)
	}
}

// TestScheduleSpreadsOnePrefix: agents that fetch their schedule from one
// address get offsets half an interval apart, in their schedule's version.
func TestScheduleSpreadsOnePrefix(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{Interval: durationpb.New(10 * time.Minute)})
	e := &env{store: c.Store, auth: c.Auth, conn: c.Dial(t)}
	client := op25bv1.NewAgentServiceClient(e.conn)
	a, _ := e.enroll(t)
	b, _ := e.enroll(t)
	fetch := func(ctx context.Context, have string) *op25bv1.GetScheduleResponse {
		resp, err := client.GetSchedule(ctx, &op25bv1.GetScheduleRequest{CurrentVersion: have})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	fetch(a, "")
	fetch(b, "")
	sa, sb := fetch(a, "").GetSchedule(), fetch(b, "").GetSchedule()
	if sa.GetOffset() == nil || sb.GetOffset() == nil {
		t.Fatalf("schedules without offsets: %v, %v", sa, sb)
	}
	if d := (sa.GetOffset().AsDuration() - sb.GetOffset().AsDuration() + 10*time.Minute) % (10 * time.Minute); d != 5*time.Minute {
		t.Errorf("offsets %v and %v; want 5m apart", sa.GetOffset().AsDuration(), sb.GetOffset().AsDuration())
	}
	if sa.GetVersion() == sb.GetVersion() {
		t.Errorf("both agents got schedule version %s; the offset must make them differ", sa.GetVersion())
	}
	if !fetch(a, sa.GetVersion()).GetUnchanged() {
		t.Errorf("the agent's own version is not current")
	}
}

// TestLossReported: the loss counts an agent sends with its schedule poll
// (with nothing to upload) and with its upload batches are kept per
// agent; a lower report (a restart from an older copy, a late one) does
// not lower them, and a malformed one changes nothing and fails nothing.
func TestLossReported(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{})
	e := &env{store: c.Store, auth: c.Auth, conn: c.Dial(t)}
	ctx, agent := e.enroll(t)
	client := op25bv1.NewAgentServiceClient(e.conn)
	const spoolID = "0190e0a4-7c2e-7000-8000-000000000001"
	poll := func(sp *op25bv1.SpoolStats) {
		t.Helper()
		if _, err := client.GetSchedule(ctx, &op25bv1.GetScheduleRequest{Spool: sp}); err != nil {
			t.Fatalf("GetSchedule(spool %v) = %v", sp, err)
		}
	}
	poll(&op25bv1.SpoolStats{Lost: &op25bv1.SpoolLoss{SpoolId: spoolID, Full: 5, NoSpace: 36}})
	if got, want := c.Lost(t, agent), (store.SpoolLoss{Full: 5, NoSpace: 36}); got != want {
		t.Fatalf("after a poll with nothing pending: %+v; want %+v", got, want)
	}
	poll(&op25bv1.SpoolStats{Lost: &op25bv1.SpoolLoss{SpoolId: spoolID, Full: 1}})
	poll(&op25bv1.SpoolStats{Lost: &op25bv1.SpoolLoss{SpoolId: "not-a-uuid", Full: 1000}})
	if got, want := c.Lost(t, agent), (store.SpoolLoss{Full: 5, NoSpace: 36}); got != want {
		t.Fatalf("after a lower and a malformed report: %+v; want %+v unchanged", got, want)
	}
	stream, err := client.UploadResults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&op25bv1.UploadResultsRequest{BatchId: 1, Results: batch(1),
		Spool: &op25bv1.SpoolStats{PendingResults: 1, Lost: &op25bv1.SpoolLoss{SpoolId: spoolID, Full: 7, NoSpace: 36, WriteError: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	if got, want := c.Lost(t, agent), (store.SpoolLoss{Full: 7, NoSpace: 36, WriteError: 1}); got != want {
		t.Errorf("after an upload batch: %+v; want %+v", got, want)
	}
	// An agent that predates the count sends only its full spool's drops.
	poll(&op25bv1.SpoolStats{DroppedFull: 4})
	if got, want := c.Lost(t, agent), (store.SpoolLoss{Full: 11, NoSpace: 36, WriteError: 1}); got != want {
		t.Errorf("after an older agent's report: %+v; want %+v", got, want)
	}
}
