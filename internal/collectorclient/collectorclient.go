// Package collectorclient is how agents and reference MTAs talk to the
// collector: a TLS gRPC connection with keepalive, which fails over from
// one collector to the next when given several, enrollment that trades a
// token for a credential kept in the state directory (0600), the
// credential on every call, and exponential backoff with jitter between
// failed attempts, so that thousands of clients do not retry in lockstep
// after an outage.
package collectorclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/internal/keyfile"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// IdleTimeout is how long a connection to the collector stays open
// without a call.
const IdleTimeout = 30 * time.Second

// Files in the state directory.
const (
	KeyFile        = "key.pem"
	CredentialFile = "credential"
)

// Dial connects to the collector at addrs, each host:port. With several
// (replicas sharing one database), calls go to the first in the order
// given that answers; when its connection breaks, the next call connects
// again to the first that answers, passing over those that are down:
// gRPC's pick_first over a static list. Each collector's certificate must
// cover the name or address it is dialled by, as with one. caFile, if
// set, is the CA that signs the collectors' certificates (a local CA);
// otherwise the system roots are used.
func Dial(addrs []string, caFile string) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("collectorclient: no collector address")
	}
	endpoints := make([]resolver.Endpoint, 0, len(addrs))
	for _, a := range addrs {
		a, err := withPort(a)
		if err != nil {
			return nil, err
		}
		// ServerName makes TLS check each collector's certificate against
		// the name it is dialled by (and sends it as :authority), not
		// against one name for the whole list.
		endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: a}}})
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("collectorclient: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("collectorclient: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	// A static resolver of its own per connection: the dialer resolves each
	// host name when it connects, as the default resolver would.
	r := manual.NewBuilderWithScheme("op25b-collector")
	r.InitialState(resolver.State{Endpoints: endpoints})
	conn, err := grpc.NewClient(r.Scheme()+":///collectors",
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"pick_first": {}}]}`),
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second, PermitWithoutStream: false}),
		// Between rounds an agent makes no call: the connection closes
		// and the next call opens a new one. A collector then holds the
		// agents of the current minutes, not all of them (issue 12:
		// 100,000 agents per collector).
		grpc.WithIdleTimeout(IdleTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("collectorclient: %w", err)
	}
	return conn, nil
}

// withPort returns addr as host:port: without a port it is gRPC's default,
// 443, as it was when the address went to gRPC's own resolver.
func withPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), "443"
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			host = ""
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" || strings.ContainsAny(host, "[]/") {
		return "", fmt.Errorf("collectorclient: collector address %q: want host:port", addr)
	}
	return net.JoinHostPort(host, port), nil
}

// Identity is an enrolled principal's state.
type Identity struct {
	ID         string
	Credential string
	Key        ed25519.PrivateKey
}

// bearer carries the credential on every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// CallOption returns the option that authenticates calls as id.
func (id Identity) CallOption() grpc.CallOption { return grpc.PerRPCCredentials(bearer(id.Credential)) }

// Token returns the enrollment token: token itself (flag --enroll or
// OP25B_ENROLL), or the first line of file (--enroll-file or
// OP25B_ENROLL_FILE), which lets a container read a token a secret
// store wrote without a shell. Spaces and tabs around it are removed.
// Both given, or a file that cannot be read or holds no token, is an
// error that names the file.
func Token(token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", errors.New("give the enrollment token either directly (--enroll, OP25B_ENROLL) or in a file (--enroll-file, OP25B_ENROLL_FILE), not both")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("enrollment token: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if t := strings.Trim(line, " \t\r"); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("enrollment token: %s: its first line is empty", file)
}

// Ensure returns the identity stored in stateDir, enrolling with token
// first if there is none. Enrolling needs a token; an agent that has
// enrolled needs none again. While the collector cannot be reached it
// retries with backoff until ctx is done.
func Ensure(ctx context.Context, conn *grpc.ClientConn, stateDir, token string, kind op25bv1.PrincipalKind, label, software string) (Identity, error) {
	key, _, err := keyfile.LoadOrCreate(filepath.Join(stateDir, KeyFile))
	if err != nil {
		return Identity{}, err
	}
	cred, err := keyfile.ReadSecret(filepath.Join(stateDir, CredentialFile))
	if err == nil {
		return Identity{ID: principalID(cred), Credential: cred, Key: key}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Identity{}, err
	}
	if token == "" {
		return Identity{}, fmt.Errorf("not enrolled yet (no %s in %s): give an enrollment token (--enroll or --enroll-file)", CredentialFile, stateDir)
	}
	// A collector that is down or still starting is waited for; a refused
	// token is final.
	b := Backoff{Min: time.Second, Max: 30 * time.Second}
	var resp *op25bv1.EnrollResponse
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err = op25bv1.NewEnrollmentServiceClient(conn).Enroll(cctx, &op25bv1.EnrollRequest{Token: token, Kind: kind,
			PublicKey: key.Public().(ed25519.PublicKey), SoftwareVersion: software, Label: label})
		cancel()
		if err == nil {
			break
		}
		if Permanent(err) || status.Code(err) == codes.InvalidArgument || ctx.Err() != nil {
			return Identity{}, fmt.Errorf("enroll: %w", err)
		}
		if b.Sleep(ctx) != nil {
			return Identity{}, fmt.Errorf("enroll: %w", err)
		}
	}
	if err := keyfile.WriteSecret(filepath.Join(stateDir, CredentialFile), resp.Credential); err != nil {
		return Identity{}, err
	}
	return Identity{ID: resp.PrincipalId, Credential: resp.Credential, Key: key}, nil
}

func principalID(cred string) string {
	for i := len(cred) - 1; i >= 0; i-- {
		if cred[i] == '.' {
			return cred[:i]
		}
	}
	return cred
}

// Permanent reports whether err means retrying cannot help: the
// credential is unknown or revoked. The caller stops and says so.
func Permanent(err error) bool {
	c := status.Code(err)
	return c == codes.Unauthenticated || c == codes.PermissionDenied
}

// Backoff is exponential backoff with "equal jitter": half the step,
// plus a random part of the other half.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	d := b.Min << min(b.attempt, 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	b.attempt++
	// Equal jitter: anywhere in [d/2, d], so clients that failed together
	// come back apart, yet none retries at once.
	return d/2 + rand.N(d/2+1)
}

// Reset is called after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for the next backoff or until ctx is done.
func (b *Backoff) Sleep(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
