// Package api is the collector's gRPC surface for agents and reference
// MTAs: enrollment, schedules, acknowledged result upload and sightings
// upload. Every call but Enroll and health checks carries a bearer
// credential (collector/auth); results are acknowledged only after their
// transaction committed (collector/store), so an agent deletes from its
// spool only what is durable.
package api

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/internal/ratelimit"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Method names that need no credential.
const (
	enrollMethod = "/op25b.v1.EnrollmentService/Enroll"
	healthPrefix = "/grpc.health.v1.Health/"
	// The dataset is public: anyone may read it, at a rate per address.
	datasetPrefix = "/op25b.v1.DatasetService/"
)

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of a call.
func PrincipalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}

// Authenticator checks credentials; *auth.Service is one.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (auth.Principal, error)
}

// Guard authenticates calls and limits each principal's rate of calls and
// upload batches.
type Guard struct {
	Auth Authenticator
	// Limit bounds calls plus batches per principal.
	Limit *ratelimit.Limiter[string]
	// UnaryTimeout bounds unary calls that come without a deadline.
	UnaryTimeout time.Duration
}

func (g *Guard) authenticate(ctx context.Context, method string) (context.Context, error) {
	if method == enrollMethod || strings.HasPrefix(method, healthPrefix) {
		return ctx, nil
	}
	if strings.HasPrefix(method, datasetPrefix) {
		if !g.allow("addr:" + peerAddr(ctx).String()) {
			return nil, status.Error(codes.ResourceExhausted, "too many dataset queries from your address; slow down")
		}
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var cred string
	if v := md.Get("authorization"); len(v) > 0 {
		cred, _ = strings.CutPrefix(v[0], "Bearer ")
	}
	if cred == "" {
		return nil, status.Error(codes.Unauthenticated, "no credential: enroll first (op25b-agent run --enroll TOKEN)")
	}
	p, err := g.Auth.Authenticate(ctx, cred)
	switch {
	case errors.Is(err, auth.ErrUnknown):
		return nil, status.Error(codes.Unauthenticated, "unknown credential")
	case errors.Is(err, auth.ErrRevoked):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, "cannot check credentials now; retry")
	}
	want := auth.Agent
	if strings.HasPrefix(method, "/op25b.v1.RefMTAService/") {
		want = auth.RefMTA
	}
	if p.Kind != want {
		return nil, status.Errorf(codes.PermissionDenied, "%s is a %s; %s is for a %s", p.ID, p.Kind, method, want)
	}
	if !g.allow(p.ID) {
		return nil, status.Error(codes.ResourceExhausted, "too many calls; slow down")
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

func (g *Guard) allow(id string) bool { return g.Limit == nil || g.Limit.Allow(id) }

// Unary is the unary interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := g.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok && g.UnaryTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.UnaryTimeout)
		defer cancel()
	}
	return h(ctx, req)
}

// Stream is the stream interceptor.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := g.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &wrapped{ServerStream: ss, ctx: ctx})
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrapped) Context() context.Context { return w.ctx }

// peerAddr is the address of the caller's connection.
func peerAddr(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
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
