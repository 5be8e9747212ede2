// Package refmtatest starts a real reference MTA on loopback for tests of
// the probe and of anything that needs one: real TCP, real TLS, real
// signatures, on free ports.
package refmtatest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/op25b/observatory/refmta/identity"
	"github.com/op25b/observatory/refmta/sighting"
	"github.com/op25b/observatory/refmta/smtpd"
)

// Server is a running reference MTA.
type Server struct {
	Key       ed25519.PrivateKey
	Addr      netip.Addr
	Ports     map[smtpd.Kind]uint16 // the port serving each kind
	Sightings *sighting.Queue
	srv       *smtpd.Server
}

// Stats returns the server's session counters.
func (s *Server) Stats() smtpd.Stats { return s.srv.Stats() }

// Public returns the reference MTA's public key.
func (s *Server) Public() ed25519.PublicKey { return s.Key.Public().(ed25519.PublicKey) }

// SMTPPorts returns the SMTP ports, in the order SMTP, Submission, SMTPS.
func (s *Server) SMTPPorts() []uint16 {
	return []uint16{s.Ports[smtpd.SMTP], s.Ports[smtpd.Submission], s.Ports[smtpd.SMTPS]}
}

// Start starts a reference MTA on addr ("127.0.0.1" or "::1") with one free
// port per kind, and stops it when the test ends. edit, if not nil, may
// change the configuration first. The per-source rate is off unless edit
// sets it: tests open many sessions from one address at once.
func Start(t testing.TB, addr string, edit func(*smtpd.Config)) *Server {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.Certificate(key, "refmta.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Key: key, Addr: netip.MustParseAddr(addr), Ports: map[smtpd.Kind]uint16{},
		Sightings: sighting.NewQueue(1024)}
	kinds := []smtpd.Kind{smtpd.SMTP, smtpd.Submission, smtpd.SMTPS, smtpd.Control}
	lns := make([]net.Listener, len(kinds))
	for i, k := range kinds {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			t.Fatalf("refmtatest: listen on %s: %v", addr, err)
		}
		lns[i] = ln
		s.Ports[k] = uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	cfg := smtpd.Config{Key: key, Cert: cert, Hostname: "refmta.test", SMTPPorts: s.SMTPPorts(),
		Sightings: s.Sightings, PerSourceRate: -1}
	if edit != nil {
		edit(&cfg)
	}
	srv := smtpd.New(cfg)
	s.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, k := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Serve(ctx, lns[i], k)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return s
}
