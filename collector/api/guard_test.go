package api

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/internal/ratelimit"
)

type fakeAuth map[string]auth.Principal

func (f fakeAuth) Authenticate(_ context.Context, cred string) (auth.Principal, error) {
	p, ok := f[cred]
	if !ok {
		return p, auth.ErrUnknown
	}
	return p, nil
}

func TestGuardRateLimitsPerPrincipal(t *testing.T) {
	now := time.Unix(0, 0)
	g := &Guard{Auth: fakeAuth{"a": {ID: "agent-a", Kind: auth.Agent}, "b": {ID: "agent-b", Kind: auth.Agent}},
		Limit: ratelimit.New[string](1, 2, func() time.Time { return now })}
	call := func(cred string) codes.Code {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+cred))
		_, err := g.authenticate(ctx, "/op25b.v1.AgentService/GetSchedule")
		return status.Code(err)
	}
	got := []codes.Code{call("a"), call("a"), call("a"), call("b")}
	want := []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.OK}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d = %v; want %v (burst 2 per principal)", i, got[i], want[i])
		}
	}
	now = now.Add(time.Second)
	if c := call("a"); c != codes.OK {
		t.Errorf("after a second at 1/s: %v; want OK", c)
	}
}

func TestGuardDatasetIsPublicAndLimitedPerAddress(t *testing.T) {
	now := time.Unix(0, 0)
	g := &Guard{Auth: fakeAuth{}, Limit: ratelimit.New[string](1, 2, func() time.Time { return now })}
	call := func(addr string) codes.Code {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))})
		_, err := g.authenticate(ctx, "/op25b.v1.DatasetService/ListASNs")
		return status.Code(err)
	}
	got := []codes.Code{call("192.0.2.1:1000"), call("192.0.2.1:1001"), call("192.0.2.1:1002"), call("192.0.2.2:1000")}
	want := []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.OK}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d = %v; want %v (no credential needed, burst 2 per address)", i, got[i], want[i])
		}
	}
}
