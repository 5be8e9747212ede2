// Package api is the collector's gRPC surface for agents and reference
// MTAs: enrollment, schedules, acknowledged result upload and sightings
// upload. Every call but Enroll and health checks carries a bearer
// credential (collector/auth); results are acknowledged only after their
// transaction committed (collector/store), so an agent deletes from its
// spool only what is durable. Failed authentication and enrollment are
// limited per source address and per claimed principal before they reach
// the database (Guard).
package api

import (
	"context"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/ingest"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of a call.
func PrincipalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}

// KeyCache finds the keys that verify the reference MTA statements inside
// results, in the database, and remembers each answer (a key, or no
// enrolled reference MTA of that id) for TTL: every batch asks. A lookup
// that fails is an error and is never remembered: the caller refuses the
// batch, since results whose statements cannot be checked would be
// attributed from the agent's ingest connection instead of the source the
// reference MTA signed, and raw results are never rewritten.
type KeyCache struct {
	// Lookup returns the keys of the ids that have one; *auth.Service's
	// RefMTAKeys is one.
	Lookup func(ctx context.Context, ids []string) (map[string]ed25519.PublicKey, error)
	TTL    time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]cachedKey
}

type cachedKey struct {
	key ed25519.PublicKey // nil: no such reference MTA
	at  time.Time
}

// maxCachedKeys bounds the cache: ids come from agents, which may name any.
const maxCachedKeys = 10000

// Keys returns the keys of the reference MTAs that results name, for
// ingest; ctx bounds the lookup.
func (c *KeyCache) Keys(ctx context.Context, results []*op25bv1.ProbeResult) (ingest.Keys, error) {
	now := c.now()
	keys := refMTAKeys{}
	var missing []string
	seen := map[string]bool{}
	c.mu.Lock()
	for _, r := range results {
		id := r.GetRefmtaId()
		if seen[id] {
			continue
		}
		seen[id] = true
		if k, hit := c.keys[id]; hit && now.Sub(k.at) < c.TTL {
			keys[id] = k.key
		} else {
			missing = append(missing, id)
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return keys, nil
	}
	found, err := c.Lookup(ctx, missing)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || len(c.keys) > maxCachedKeys {
		c.keys = map[string]cachedKey{}
	}
	for _, id := range missing {
		keys[id] = found[id]
		c.keys[id] = cachedKey{found[id], now}
	}
	return keys, nil
}

func (c *KeyCache) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// refMTAKeys are the keys of one batch; a nil key is no reference MTA.
type refMTAKeys map[string]ed25519.PublicKey

// RefMTAKey implements ingest.Keys.
func (k refMTAKeys) RefMTAKey(id string) (ed25519.PublicKey, bool) {
	key := k[id]
	return key, key != nil
}
