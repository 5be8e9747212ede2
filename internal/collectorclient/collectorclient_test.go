package collectorclient

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/op25b/observatory/collector/localca"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for i, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		got := b.Next()
		if got < want/2 || got > want {
			t.Errorf("attempt %d: %v; want in [%v, %v]", i, got, want/2, want)
		}
	}
	b.Reset()
	if got := b.Next(); got > 100*time.Millisecond {
		t.Errorf("after Reset: %v; want at most 100ms", got)
	}
}

func TestPrincipalID(t *testing.T) {
	for in, want := range map[string]string{"agent-abc.s3cret": "agent-abc", "nodot": "nodot", "a.b.c": "a.b"} {
		if got := principalID(in); got != want {
			t.Errorf("principalID(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestWithPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"collector.example:8443", "collector.example:8443"},
		{"192.0.2.1:8443", "192.0.2.1:8443"},
		{"[2001:db8::1]:8443", "[2001:db8::1]:8443"},
		{"collector.example", "collector.example:443"},
		{"192.0.2.1", "192.0.2.1:443"},
		{"2001:db8::1", "[2001:db8::1]:443"},
		{"[2001:db8::1]", "[2001:db8::1]:443"},
		{"a:b:c", ""},
		{"", ""},
		{"https://collector.example", ""},
		{"collector.example:https", ""},
		{"collector.example:0", ""},
		{":8443", ""},
	} {
		got, err := withPort(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("withPort(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// healthServer serves the gRPC health service over TLS with cert on a free
// loopback port until the test ends or stop is called.
func healthServer(t *testing.T, cert tls.Certificate) (port string, stop func()) {
	t.Helper()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, srv.Stop
}

// answeredBy makes one call on conn and returns the port of the server
// that answered it.
func answeredBy(t *testing.T, conn *grpc.ClientConn) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(p.Addr.String())
	return port, nil
}

// TestDialFailsOver: with two collectors, each with a certificate from the
// one CA for its own name only (127.0.0.1 and localhost), calls go to the
// first listed, then to the second once the first is gone; a connection
// made while the first is down goes to the second at once; and each
// certificate is checked against the name its collector is dialled by.
func TestDialFailsOver(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	certA, err := localca.Ensure(dirA, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The operator's way to a second collector: the first one's CA,
	// which signs the second's certificate for its own name.
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	certB, err := localca.Ensure(dirB, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dirA, localca.CACert)
	portA, stopA := healthServer(t, certA)
	portB, _ := healthServer(t, certB)
	addrs := []string{"127.0.0.1:" + portA, "localhost:" + portB}
	dial := func(addrs ...string) *grpc.ClientConn {
		t.Helper()
		conn, err := Dial(addrs, ca)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	conn := dial(addrs...)
	if got, err := answeredBy(t, conn); err != nil || got != portA {
		t.Fatalf("with both up: answered by port %q, %v; want the first, %s", got, err, portA)
	}
	stopA()
	// Wait until the connection saw the first one go; a call made before
	// could still be given its broken transport.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for s := conn.GetState(); s == connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatal("the connection never noticed the first collector stopped")
		}
	}
	if got, err := answeredBy(t, conn); err != nil || got != portB {
		t.Errorf("after the first stopped: answered by port %q, %v; want the second, %s", got, err, portB)
	}
	if got, err := answeredBy(t, dial(addrs...)); err != nil || got != portB {
		t.Errorf("a new connection with the first down: answered by port %q, %v; want the second, %s", got, err, portB)
	}
	if got, err := answeredBy(t, dial("127.0.0.1:"+portB)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("dialling the second by a name its certificate lacks: answered by port %q, %v; want a certificate error", got, err)
	}
}

// TestToken: the enrollment token comes from --enroll, or from the first
// line of --enroll-file (a secret a container mounts); both, an unreadable
// file or an empty first line is an error that names the file.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("token", " op25b-agent-secret\t\r\nsecond line ignored\n")
	empty := file("empty", "\nop25b-agent-on-line-two\n")
	for _, c := range []struct {
		token, file, want, err string
	}{
		{token: "op25b-agent-flag", want: "op25b-agent-flag"},
		{file: good, want: "op25b-agent-secret"},
		{},
		{token: "op25b-agent-flag", file: good, err: "not both"},
		{file: filepath.Join(dir, "missing"), err: filepath.Join(dir, "missing")},
		{file: empty, err: empty + ": its first line is empty"},
	} {
		got, err := Token(c.token, c.file)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("Token(%q, %q) = %q, %v; want %q", c.token, c.file, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Token(%q, %q) = %q, %v; want an error with %q", c.token, c.file, got, err, c.err)
		}
	}
}
