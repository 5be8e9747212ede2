package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// TestKeyLookupFailureRefusesTheBatch is issue 10's point 7: while the
// reference MTAs' keys cannot be looked up, a batch is refused
// (Unavailable, the agent keeps it) instead of stored with its egress
// taken from the ingest connection; once they can, the same batch is
// stored with the source the reference MTA signed.
func TestKeyLookupFailureRefusesTheBatch(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	c.SetSchedule(&op25bv1.Schedule{})
	var down atomic.Bool
	lookup := c.Server.Keys.Lookup
	c.Server.Keys.Lookup = func(ctx context.Context, ids []string) (map[string]ed25519.PublicKey, error) {
		if down.Load() {
			return nil, errors.New("injected: the database is down")
		}
		return lookup(ctx, ids)
	}
	e := &env{store: c.Store, auth: c.Auth, conn: c.Dial(t)}
	ctx, _ := e.enroll(t)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	refmta, _, err := c.Auth.Enroll(context.Background(), c.Token(t, auth.RefMTA, 1), auth.RefMTA, pub, "mx1", "")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	egress := netip.MustParseAddr("198.51.100.7")
	nonce := []byte("0123456789abcdef")
	r := &op25bv1.ProbeResult{ResultId: uuidv7.New(at), RefmtaId: refmta, Port: 25, Nonce: nonce,
		Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, Verdict: op25bv1.Verdict_VERDICT_OPEN, StartedAt: timestamppb.New(at),
		Evidence: &op25bv1.Evidence{Statement: proof.Sign(priv, proof.Statement{Nonce: nonce, Source: egress, Port: 25, Time: at})}}

	down.Store(true)
	if resp, err := upload(t, ctx, e.conn, []*op25bv1.ProbeResult{r}); status.Code(err) != codes.Unavailable {
		t.Fatalf("upload while the keys cannot be looked up = %v, %v; want Unavailable", resp, err)
	}
	if n := c.Count(t, "results"); n != 0 {
		t.Fatalf("%d results stored while their statements could not be verified; want 0", n)
	}

	down.Store(false)
	resp, err := upload(t, ctx, e.conn, []*op25bv1.ProbeResult{r})
	if err != nil || len(resp.AckedResultIds) != 1 {
		t.Fatalf("upload after the database came back = %v, %v; want the result acknowledged", resp, err)
	}
	var src int
	var got string
	if err := c.Store.Pool.QueryRow(context.Background(), "SELECT egress_source, host(egress) FROM results").Scan(&src, &got); err != nil {
		t.Fatal(err)
	}
	if src != int(store.EgressStatement) || got != egress.String() {
		t.Errorf("egress = %s from source %d; want %s from the signed statement (%d)", got, src, egress, store.EgressStatement)
	}
}
