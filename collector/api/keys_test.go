package api

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

type ctxKey struct{}

// TestKeyCacheNeverCachesAFailure: a lookup that fails is an error, made
// with the caller's context, and is asked again next time, while keys and
// "no such reference MTA" are remembered for the TTL (issue 10: the cache
// kept a database error as "no key" for a minute).
func TestKeyCacheNeverCachesAFailure(t *testing.T) {
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	now := time.Unix(0, 0)
	var lookups [][]string
	down := true
	c := &KeyCache{TTL: time.Minute, Now: func() time.Time { return now },
		Lookup: func(ctx context.Context, ids []string) (map[string]ed25519.PublicKey, error) {
			if ctx.Value(ctxKey{}) != "caller" {
				t.Errorf("lookup without the caller's context")
			}
			lookups = append(lookups, ids)
			if down {
				return nil, errors.New("connection refused")
			}
			return map[string]ed25519.PublicKey{"refmta-a": pub}, nil
		}}
	ctx := context.WithValue(context.Background(), ctxKey{}, "caller")
	batch := []*op25bv1.ProbeResult{{RefmtaId: "refmta-a"}, {RefmtaId: "refmta-b"}, {RefmtaId: "refmta-a"}}

	if keys, err := c.Keys(ctx, batch); err == nil {
		t.Fatalf("Keys while the database is down = %v, nil; want an error", keys)
	}
	down = false
	keys, err := c.Keys(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := keys.RefMTAKey("refmta-a"); !ok || !k.Equal(pub) {
		t.Errorf("refmta-a after the database came back: %x, %v; want its key (the failure was cached)", k, ok)
	}
	if _, ok := keys.RefMTAKey("refmta-b"); ok {
		t.Errorf("refmta-b, not enrolled, has a key")
	}
	if len(lookups) != 2 || len(lookups[1]) != 2 {
		t.Errorf("lookups = %v; want two, each of refmta-a and refmta-b once", lookups)
	}
	// Within the TTL both answers come from the cache, the missing key too.
	now = now.Add(59 * time.Second)
	down = true
	if _, err := c.Keys(ctx, batch); err != nil || len(lookups) != 2 {
		t.Errorf("within the TTL: %v after %d lookups; want cached answers", err, len(lookups))
	}
	now = now.Add(time.Second)
	if _, err := c.Keys(ctx, batch); err == nil {
		t.Errorf("after the TTL with the database down: no error")
	}
}
