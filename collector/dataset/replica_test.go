package dataset_test

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// TestReadsFromAStandby: with WithReplica, the queries answer from a real
// streaming standby, read by a role that may only read, while Refresh and
// Rebuild write to the primary; a submission the standby has not replayed
// is read from the primary; Replica and GetInfo say how far behind the
// standby is.
func TestReadsFromAStandby(t *testing.T) {
	ctx := context.Background()
	primaryURL := storetest.URL(t)
	st, err := store.Open(ctx, primaryURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	datasettest.NewWorld().Seed(t, st)
	primary, err := dataset.New(st.Pool, dataset.Config{}, datasettest.Clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rs, err := primary.Replica(ctx); err != nil || rs != (dataset.ReplicaState{}) {
		t.Errorf("Replica() reading from the primary = %+v, %v; want the zero state", rs, err)
	}
	reader := readOnlyRole(t, st)
	standbyURL := storetest.Standby(t, primaryURL)
	readPool := pool(t, withUser(t, standbyURL, reader))
	d := primary.WithReplica(readPool)

	// Caught up, the standby answers what the primary does.
	list := func(d *dataset.Dataset) *pb.ListASNsResponse {
		t.Helper()
		resp, err := d.ListASNs(ctx, &pb.ListASNsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if got, want := list(d), list(primary); len(want.GetAsns()) == 0 || !proto.Equal(got, want) {
		t.Errorf("ListASNs from the standby: %d ASNs; want the primary's %d, equal", len(got.GetAsns()), len(want.GetAsns()))
	}
	asn := &pb.GetASNRequest{Asn: 64506, Family: pb.AddressFamily_ADDRESS_FAMILY_IPV4}
	got, err := d.GetASN(ctx, asn)
	if err != nil {
		t.Fatal(err)
	}
	if want, err := primary.GetASN(ctx, asn); err != nil || !proto.Equal(got, want) || len(got.GetChanges()) == 0 {
		t.Errorf("GetASN(AS64506) from the standby differs from the primary's (%v), or has no policy change", err)
	}
	// The lag reads "caught up" from the WAL receiver's row, which a role
	// that may only read must see.
	var receiver bool
	if err := readPool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_wal_receiver)").Scan(&receiver); err != nil || !receiver {
		t.Errorf("the read-only role sees a WAL receiver on the standby: %v, %v; want true", receiver, err)
	}
	info, err := d.GetInfo(ctx, &pb.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.GetReadFromReplica() || info.GetReplicaLag() == nil || info.GetReplicaLag().AsDuration() < 0 || info.GetReplicaLag().AsDuration() > time.Minute {
		t.Errorf("GetInfo from a caught-up standby: read_from_replica %v, replica_lag %v; want true and under a minute",
			info.GetReadFromReplica(), info.GetReplicaLag())
	}
	if info, err := primary.GetInfo(ctx, &pb.GetInfoRequest{}); err != nil || info.GetReadFromReplica() || info.ReplicaLag != nil {
		t.Errorf("GetInfo from the primary: read_from_replica %v, replica_lag %v, %v; want false and none", info.GetReadFromReplica(), info.GetReplicaLag(), err)
	}

	// With replay paused, what the primary commits is on the primary only.
	admin := connect(t, standbyURL)
	replayed := pauseReplay(t, admin)
	farm := &datasettest.World{}
	farm.Farm(64507, 5, 1)
	farm.Seed(t, st)
	// Refresh and Rebuild write to the primary, not to the read-only
	// standby.
	if rs, err := d.Refresh(ctx); err != nil || rs.Skipped || rs.Keys == 0 {
		t.Fatalf("Refresh with the queries on a standby = %+v, %v; want the new ASN's keys refreshed on the primary", rs, err)
	}
	if _, err := d.Rebuild(ctx, nil); err != nil {
		t.Fatalf("Rebuild with the queries on a standby: %v", err)
	}
	has64507 := func(r *pb.ListASNsResponse) bool {
		for _, a := range r.GetAsns() {
			if a.GetAsn() == 64507 {
				return true
			}
		}
		return false
	}
	if !has64507(list(primary)) {
		t.Fatal("the primary does not list AS64507 after its refresh")
	}
	if has64507(list(d)) {
		t.Error("AS64507 is listed while the standby's replay is paused; want the queries answered by the standby")
	}
	id := submit(t, st)
	waitReceived(t, admin)
	var onStandby bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM submissions WHERE submission_id = $1)", id).Scan(&onStandby); err != nil || onStandby {
		t.Fatalf("the submission on the paused standby: %v, %v; want it absent", onStandby, err)
	}
	if sub, err := d.GetSubmission(ctx, id); err != nil || sub.GetSubmissionId() != id || len(sub.GetResults()) != 1 {
		t.Errorf("GetSubmission(%s) just stored, not on the standby = %v, %v; want it read from the primary", id, sub, err)
	}
	before := time.Now()
	rs, err := d.Replica(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The last transaction the standby replayed committed before replayed
	// (PostgreSQL keeps microseconds).
	if !rs.Replica || !rs.LagKnown || rs.Lag <= 0 || rs.Lag < before.Sub(replayed)-time.Microsecond {
		t.Errorf("Replica() with replay paused behind received WAL = %+v; want a replica, its lag at least %v", rs, before.Sub(replayed))
	}

	// Resumed and caught up, the standby has it all.
	if _, err := admin.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	storetest.CatchUp(t)
	if got, want := list(d), list(primary); !has64507(got) || !proto.Equal(got, want) {
		t.Errorf("ListASNs from the standby after catching up: AS64507 listed %v, equal to the primary's %v; want both", has64507(got), proto.Equal(got, want))
	}
}

// readOnlyRole makes a role that may only read, as an operator would give
// the replica's URL, and returns its name.
func readOnlyRole(t *testing.T, st *store.Store) string {
	t.Helper()
	ctx := context.Background()
	var db string
	if err := st.Pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	role := db + "_reader"
	if _, err := st.Pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN IN ROLE pg_read_all_data"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := st.Pool.Exec(context.Background(), "DROP ROLE "+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}

func withUser(t *testing.T, rawURL, user string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

func pool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// poll runs cond until it holds, failing t after two minutes.
func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within two minutes", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pauseReplay pauses the standby's replay (resumed when t ends) and
// returns a time after the last transaction it replayed.
func pauseReplay(t *testing.T, standby *pgx.Conn) time.Time {
	t.Helper()
	ctx := context.Background()
	if _, err := standby.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Exec(context.Background(), "SELECT pg_wal_replay_resume()") })
	poll(t, "pausing the standby's replay", func() (bool, error) {
		var state string
		err := standby.QueryRow(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state)
		return state == "paused", err
	})
	return time.Now()
}

// waitReceived waits until the paused standby has received WAL that it
// has not replayed.
func waitReceived(t *testing.T, standby *pgx.Conn) {
	t.Helper()
	poll(t, "the standby receiving the primary's WAL", func() (bool, error) {
		var behind bool
		err := standby.QueryRow(context.Background(), "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").Scan(&behind)
		return behind, err
	})
}

// submit stores a one-off contribution of one result and returns its id.
func submit(t *testing.T, st *store.Store) string {
	t.Helper()
	at := time.Now().UTC().Truncate(time.Microsecond)
	egress := netip.MustParseAddr("198.51.100.7")
	sub := store.Submission{ID: uuidv7.New(at), RoundID: uuidv7.New(at), Client: egress, AgentVersion: "test"}
	r := store.Result{ID: uuidv7.New(at), MeasuredAt: at, RefMTA: "refmta-test", RoundID: sub.RoundID, Port: 25, Family: 4,
		Verdict: 1, Egress: egress, EgressSource: store.EgressControl, Prefix: netip.PrefixFrom(egress, 24).Masked(),
		ASN: 64500, Evidence: []byte{}, SubmissionID: sub.ID}
	if err := st.InsertSubmission(context.Background(), sub, []store.Result{r}); err != nil {
		t.Fatal(err)
	}
	return sub.ID
}
