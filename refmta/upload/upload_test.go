package upload_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/sighting"
	"github.com/op25b/observatory/refmta/upload"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestUploadsAndEmptiesQueue(t *testing.T) {
	c := collectortest.Start(t, api.Options{})
	conn := c.Dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := collectorclient.Ensure(ctx, conn, t.TempDir(), c.Token(t, auth.RefMTA, 1), op25bv1.PrincipalKind_PRINCIPAL_KIND_REFMTA, "mx1", "test")
	if err != nil {
		t.Fatal(err)
	}
	q := sighting.NewQueue(10000)
	for i := 0; i < 1234; i++ {
		now := time.Now()
		q.Add(sighting.Sighting{ID: uuidv7.New(now), Nonce: []byte{byte(i), byte(i >> 8), 3}, Source: netip.MustParseAddr("198.51.100.7"), Port: 25, Time: now})
	}
	u := &upload.Uploader{Conn: conn, Identity: id, Queue: q, Log: slog.New(slog.DiscardHandler), Idle: 20 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	for q.Len() > 0 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.Count(t, "sightings"); n != 1234 {
		t.Errorf("stored %d sightings; want 1234", n)
	}
	// Revoked: the uploader stops with a clear error instead of retrying.
	if err := c.Auth.Revoke(ctx, id.ID); err != nil {
		t.Fatal(err)
	}
	q.Add(sighting.Sighting{ID: uuidv7.New(time.Now()), Nonce: []byte{1}, Source: netip.MustParseAddr("198.51.100.7"), Port: 25, Time: time.Now()})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("Run after revocation = %v; want a refusal", err)
		}
	case <-ctx.Done():
		t.Fatal("uploader kept running after its credential was revoked")
	}
}
