package api

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Options bound what one collector accepts.
type Options struct {
	// MaxRecvMsgSize bounds one message (default 4 MiB): a larger one gets
	// ResourceExhausted.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds streams per connection (default 16).
	MaxConcurrentStreams uint32
}

// NewGRPCServer returns a gRPC server with TLS, keepalive enforcement,
// message and stream limits, the guard's interceptors and the standard
// health service (serving).
func NewGRPCServer(tc *tls.Config, g *Guard, o Options) (*grpc.Server, *health.Server) {
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = 4 << 20
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 16
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tc)),
		grpc.ForceServerCodecV2(codec{}),
		grpc.MaxRecvMsgSize(o.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		// Per connection, gRPC keeps a read buffer and a write buffer of 32
		// KiB each by default. An agent's messages are a round of results
		// (a few KiB) and their acknowledgement: 8 KiB buffers cut what
		// each connected agent costs (issue 12: 66 KiB per connected agent
		// before, 61 to 63 after, in BENCHMARKS.md's 10,000-connected row).
		grpc.ReadBufferSize(8<<10),
		grpc.WriteBufferSize(8<<10),
		// Agents ping at most every 30 s; anything more eager is a
		// misbehaving client and is disconnected.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ConnectionTimeout(20*time.Second),
		grpc.ChainUnaryInterceptor(g.Unary),
		grpc.ChainStreamInterceptor(g.Stream),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	return srv, hs
}
