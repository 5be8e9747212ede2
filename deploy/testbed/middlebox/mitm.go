package middlebox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"time"
)

// MITM intercepts implicit TLS (port 465): it completes the client's
// handshake with its own certificate, opens its own TLS session to the
// original destination and relays the plaintext both ways. The dialog and
// the signed statement arrive intact; only the certificate is foreign, so
// the agent must call it TAMPERED (certificate_mismatch).
type MITM struct {
	Upstream UpstreamFunc
	Log      *slog.Logger
	config   *tls.Config
}

// NewMITM returns a MITM that presents a fresh self-signed ECDSA
// certificate for hostname.
func NewMITM(hostname string, upstream UpstreamFunc, log *slog.Logger) (*MITM, error) {
	cert, err := selfSigned(hostname)
	if err != nil {
		return nil, fmt.Errorf("middlebox: mitm certificate: %w", err)
	}
	return &MITM{
		Upstream: upstream,
		Log:      log,
		config:   &tls.Config{Certificates: []tls.Certificate{cert}},
	}, nil
}

// Handle intercepts one session.
func (m *MITM) Handle(ctx context.Context, c net.Conn) {
	log := m.Log.With("client", c.RemoteAddr().String())
	client := tls.Server(c, m.config)
	if err := client.HandshakeContext(ctx); err != nil {
		log.Debug("mitm: client handshake", "err", err)
		c.Close()
		return
	}
	up, dst, err := dialUpstream(ctx, c, m.Upstream)
	if err != nil {
		log.Warn("mitm: no upstream", "err", err)
		c.Close()
		return
	}
	// The proxy checks nothing about the real server: an interceptor that
	// re-signs traffic has no reason to, and the reference MTA's
	// certificate is self-signed anyway.
	server := tls.Client(up, &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         client.ConnectionState().ServerName,
	})
	if err := server.HandshakeContext(ctx); err != nil {
		log.Warn("mitm: upstream handshake", "upstream", dst.String(), "err", err)
		up.Close()
		c.Close()
		return
	}
	log.Debug("mitm: intercepting", "upstream", dst.String())
	splice(log, client, server, plainCopy, plainCopy)
}

func selfSigned(hostname string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"OP25B testbed interception proxy"}},
		DNSNames:     []string{hostname},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
