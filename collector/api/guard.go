package api

import (
	"context"
	"crypto/sha256"
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
	"github.com/op25b/observatory/internal/ratelimit"
)

// Method names that need no credential.
const (
	enrollMethod = "/op25b.v1.EnrollmentService/Enroll"
	healthPrefix = "/grpc.health.v1.Health/"
	// The dataset is public: anyone may read it, at a rate per address.
	datasetPrefix = "/op25b.v1.DatasetService/"
)

// Failed authentication is limited before it reaches the database, with a
// token bucket per source address (an IPv4 address or IPv6 /64), one per
// principal that a credential claims (its id, before the last '.'), and
// one per source address for enrollment. Only failures spend tokens: an
// attempt goes to the database while its buckets have a token, and a
// refusal charges them afterwards, so a crowd of good agents reconnecting
// at once behind one address is never held back. A credential or token
// that the database accepted in the last verifiedFor skips the buckets
// altogether, so a client failing behind a carrier-grade NAT does not lock
// out the enrolled agents that share its address. docs/operator.md says
// why these sizes.
const (
	// authFailBurst failures per source, then authFailRate per second.
	authFailBurst = 30
	authFailRate  = 1.0
	// principalFailBurst failures claiming one principal, then one a minute.
	principalFailBurst = 10
	principalFailRate  = 1.0 / 60
	// enrollFailBurst failed enrollments per source, then one per 10 s.
	enrollFailBurst = 10
	enrollFailRate  = 0.1
	// verifiedFor is how long an accepted credential or token skips the
	// failure buckets.
	verifiedFor = 24 * time.Hour
	// maxVerified bounds the accepted credentials remembered: twice the
	// design point's 100,000 agents.
	maxVerified = 200000
)

// Authenticator checks credentials; *auth.Service is one.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (auth.Principal, error)
}

// Guard authenticates calls, limits each principal's rate of calls and
// upload batches, and limits failed authentication and enrollment per
// source address and per claimed principal before they reach the
// database. The zero value of a field is its default.
type Guard struct {
	Auth Authenticator
	// Limit bounds calls plus batches per principal, and dataset calls per
	// source address.
	Limit *ratelimit.Limiter[string]
	// UnaryTimeout bounds unary calls that come without a deadline.
	UnaryTimeout time.Duration
	// Now is the clock of the failure buckets (time.Now).
	Now func() time.Time

	once           sync.Once
	authFails      *ratelimit.Limiter[string]
	principalFails *ratelimit.Limiter[string]
	enrollFails    *ratelimit.Limiter[string]
	verifiedMu     sync.Mutex
	verified       map[[sha256.Size]byte]time.Time // accepted secrets, when
}

func (g *Guard) init() {
	g.once.Do(func() {
		if g.Now == nil {
			g.Now = time.Now
		}
		g.authFails = ratelimit.New[string](authFailRate, authFailBurst, g.Now)
		g.principalFails = ratelimit.New[string](principalFailRate, principalFailBurst, g.Now)
		g.enrollFails = ratelimit.New[string](enrollFailRate, enrollFailBurst, g.Now)
		g.verified = map[[sha256.Size]byte]time.Time{}
	})
}

// bucket is one failure bucket: a limiter and a key.
type bucket struct {
	l   *ratelimit.Limiter[string]
	key string
}

// attempt is one authentication or enrollment within its failure buckets.
type attempt struct {
	g       *Guard
	secret  [sha256.Size]byte
	buckets []bucket
}

// admit starts an attempt with secret, and reports false when the secret
// was not accepted lately and one of the buckets has no token.
func (g *Guard) admit(secret string, buckets ...bucket) (*attempt, bool) {
	a := &attempt{g: g, secret: sha256.Sum256([]byte(secret)), buckets: buckets}
	g.verifiedMu.Lock()
	at, ok := g.verified[a.secret]
	g.verifiedMu.Unlock()
	if ok && g.Now().Sub(at) < verifiedFor {
		return a, true
	}
	for _, b := range buckets {
		if !b.l.Ready(b.key) {
			return a, false
		}
	}
	return a, true
}

// accepted records that the database accepted the secret: it skips the
// buckets from now on.
func (a *attempt) accepted() {
	g := a.g
	g.verifiedMu.Lock()
	defer g.verifiedMu.Unlock()
	if len(g.verified) >= maxVerified {
		now := g.Now()
		for k, at := range g.verified {
			if now.Sub(at) >= verifiedFor || len(g.verified) >= maxVerified {
				delete(g.verified, k)
			}
		}
	}
	g.verified[a.secret] = g.Now()
}

// refused records that the database refused the secret: it charges the
// buckets, and the secret skips them no more.
func (a *attempt) refused() {
	g := a.g
	g.verifiedMu.Lock()
	delete(g.verified, a.secret)
	g.verifiedMu.Unlock()
	for _, b := range a.buckets {
		b.l.Charge(b.key)
	}
}

func (g *Guard) authenticate(ctx context.Context, method string) (context.Context, error) {
	if method == enrollMethod || strings.HasPrefix(method, healthPrefix) {
		return ctx, nil
	}
	if strings.HasPrefix(method, datasetPrefix) {
		if !g.allow("addr:" + ratelimit.Source(peerAddr(ctx)).String()) {
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
	g.init()
	buckets := []bucket{{g.authFails, ratelimit.Source(peerAddr(ctx)).String()}}
	if claimed := claimedPrincipal(cred); claimed != "" {
		buckets = append(buckets, bucket{g.principalFails, claimed})
	}
	f, ok := g.admit(cred, buckets...)
	if !ok {
		return nil, status.Error(codes.ResourceExhausted, "too many failed authentications from your address or for this principal; retry later")
	}
	p, err := g.Auth.Authenticate(ctx, cred)
	switch {
	case errors.Is(err, auth.ErrUnknown):
		f.refused()
		return nil, status.Error(codes.Unauthenticated, "unknown credential")
	case errors.Is(err, auth.ErrRevoked):
		f.refused()
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, "cannot check credentials now; retry")
	}
	f.accepted()
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

// claimedPrincipal is the principal id a credential names (credentials are
// the id, '.', and a secret), clipped: the string is the caller's.
func claimedPrincipal(cred string) string {
	i := strings.LastIndexByte(cred, '.')
	if i <= 0 {
		return ""
	}
	return cred[:min(i, 64)]
}

func (g *Guard) allow(id string) bool { return g.Limit == nil || g.Limit.Allow(id) }

// enroll runs an enrollment within the failed-enrollment bucket of its
// source: wrong, expired or used-up tokens spend it.
func (g *Guard) enroll(ctx context.Context, req any, h grpc.UnaryHandler) (any, error) {
	type tokened interface{ GetToken() string }
	tok, _ := req.(tokened)
	if tok == nil {
		return h(ctx, req)
	}
	g.init()
	f, ok := g.admit(tok.GetToken(), bucket{g.enrollFails, ratelimit.Source(peerAddr(ctx)).String()})
	if !ok {
		return nil, status.Error(codes.ResourceExhausted, "too many failed enrollments from your address; retry later")
	}
	resp, err := h(ctx, req)
	switch status.Code(err) {
	case codes.OK:
		f.accepted()
	case codes.Unauthenticated, codes.PermissionDenied:
		f.refused()
	}
	return resp, err
}

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
	if info.FullMethod == enrollMethod {
		return g.enroll(ctx, req, h)
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
