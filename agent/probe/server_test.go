package probe

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
)

// server is a real TCP server on a loopback port whose sessions run a
// handler written by the test.
type server struct {
	addr netip.Addr
	port uint16
	wg   sync.WaitGroup // running sessions
}

// listen starts a server on addr ("127.0.0.1", "::1") and stops it, and
// every session, when the test ends.
func listen(t *testing.T, addr string, handle func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	s := &server{addr: ap.Addr().Unmap(), port: ap.Port()}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// closedPort returns a port on addr on which nothing listens.
func closedPort(t *testing.T, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func newKey(t testing.TB) ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// certificate returns a self-signed certificate for key, as a reference
// MTA makes one.
func certificate(t testing.TB, key ed25519.PrivateKey, name string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// issued returns a certificate for key and name issued by a CA of its own
// named caName, with the CA in the chain: what a TLS interceptor presents.
func issued(t testing.TB, key ed25519.PrivateKey, name, caName string) tls.Certificate {
	t.Helper()
	caKey := newKey(t)
	ca := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: caName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// fakeMTA is a test-only reference MTA that follows docs/methodology.md,
// with switches to misbehave as a path or an impostor would.
type fakeMTA struct {
	key  ed25519.PrivateKey // signs statements; nil: a foreign MTA with no proof
	cert tls.Certificate
	// implicitTLS: TLS before the banner (465, control).
	implicitTLS bool
	// served: the ports signed as served (control port).
	served []uint16
	// strip signs STARTTLS but leaves it out of the reply, as a path
	// stripping it would.
	strip bool
	// wire, if not nil, receives every byte the client sends outside TLS
	// records: plaintext, and the plaintext inside TLS.
	wire *lockedBuffer
	// banner is the greeting's text after "220 "; empty: a foreign MTA's.
	banner string
	// refuse, if set, answers EHLO with our signed refusal for this
	// reason, as a busy reference MTA does.
	refuse string
	// stall, while positive, makes that many sessions say nothing at all,
	// as a path that lost every segment of them would.
	stall *atomic.Int32
	// greetAfter delays the greeting, as a slow path would.
	greetAfter time.Duration
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (f *fakeMTA) reader(c net.Conn) *bufio.Reader {
	var r io.Reader = c
	if f.wire != nil {
		r = io.TeeReader(c, f.wire)
	}
	return bufio.NewReader(r)
}

func (f *fakeMTA) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	port := c.LocalAddr().(*net.TCPAddr).AddrPort().Port()
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{f.cert}}
	var conn net.Conn = c
	inTLS := false
	if f.implicitTLS {
		tc := tls.Server(c, tlsCfg)
		if tc.Handshake() != nil {
			return
		}
		conn, inTLS = tc, true
	}
	if f.stall != nil && f.stall.Add(-1) >= 0 {
		io.Copy(io.Discard, conn)
		return
	}
	r := f.reader(conn)
	banner := f.banner
	if banner == "" {
		banner = "fake.test ESMTP"
	}
	time.Sleep(f.greetAfter)
	fmt.Fprintf(conn, "220 %s\r\n", banner)
	for {
		line, err := smtpwire.ReadLine(r, smtpwire.MaxCommandLen)
		if err != nil {
			return
		}
		verb, arg := smtpwire.Command(line)
		switch verb {
		case "EHLO":
			caps := []string{"8BITMIME"}
			if !inTLS {
				caps = append(caps, "STARTTLS")
			}
			sent := caps
			if f.strip {
				sent = slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == "STARTTLS" })
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "250-fake.test\r\n")
			for _, c := range sent {
				fmt.Fprintf(&b, "250-%s\r\n", c)
			}
			nonce, ok := smtpwire.NonceFromEHLO(arg)
			if f.refuse != "" && f.key != nil && ok {
				st := proof.Statement{Nonce: nonce, Source: src, Port: port, Time: time.Now(), Refused: f.refuse}
				fmt.Fprintf(conn, "421-fake.test busy\r\n421 %s %s\r\n", smtpwire.ProofKeyword, proof.Sign(f.key, st))
				return
			}
			if f.key != nil && ok {
				st := proof.Statement{Nonce: nonce, Source: src, Port: port, Time: time.Now(), Capabilities: caps, Ports: f.served}
				fmt.Fprintf(&b, "250 %s %s\r\n", smtpwire.ProofKeyword, proof.Sign(f.key, st))
			} else {
				b.WriteString("250 HELP\r\n")
			}
			conn.Write(b.Bytes())
		case "STARTTLS":
			fmt.Fprintf(conn, "220 go ahead\r\n")
			tc := tls.Server(conn, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			conn, inTLS = tc, true
			r = f.reader(conn)
		case "QUIT":
			fmt.Fprintf(conn, "221 bye\r\n")
			// Keep reading, so that anything sent after QUIT is recorded.
			io.Copy(io.Discard, r)
			return
		default:
			fmt.Fprintf(conn, "500 unrecognized\r\n")
		}
	}
}

// fakeRefMTA starts a fakeMTA-based reference MTA on addr: the control
// port and one port per mode, all with key. It returns the target, whose
// ports are in the order STARTTLS, implicit TLS.
func fakeRefMTA(t *testing.T, addr string, key ed25519.PrivateKey, edit func(*fakeMTA)) Target {
	t.Helper()
	cert := certificate(t, key, "fake.test")
	start := func(implicit bool, served []uint16) uint16 {
		f := &fakeMTA{key: key, cert: cert, implicitTLS: implicit, served: served,
			banner: "fake.test ESMTP " + smtpwire.BannerMark + " (a test)"}
		if edit != nil {
			edit(f)
		}
		return listen(t, addr, f.handle).port
	}
	p25 := start(false, nil)
	p465 := start(true, nil)
	ctl := start(true, []uint16{p25, p465})
	return Target{RefMTA: "fake", Key: key.Public().(ed25519.PublicKey), Addr: netip.MustParseAddr(addr),
		Ports: []Port{{Number: p25}, {Number: p465, ImplicitTLS: true}}, ControlPort: ctl}
}
