// Package identity is the reference MTA's identity as agents see it: the TLS
// certificate bound to the Ed25519 key that signs every statement
// (internal/proof; the key file is internal/keyfile), so that agents pin the
// key rather than trust a CA, and the identity document agents read (the
// protojson of op25bv1.ReferenceMTA).
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Certificate returns a self-signed certificate for key, valid from an hour
// before now for a year. It is made afresh at every start: agents pin the
// key inside it, not the certificate.
func Certificate(key ed25519.PrivateKey, hostname string, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"OP25B Observatory reference MTA"}},
		DNSNames:     []string{hostname},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// WriteDocument writes doc as indented protojson to path, atomically, so
// that a reader polling for the file never sees half of it.
func WriteDocument(path string, doc *op25bv1.ReferenceMTA) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(doc)
	if err != nil {
		return fmt.Errorf("identity: encode document: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("identity: write document: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("identity: write document: %w", err)
	}
	return nil
}

// DocumentPath is where the HTTP listener publishes the identity document.
const DocumentPath = "/.well-known/op25b-refmta.json"

// Handler publishes doc at DocumentPath, so that a volunteer can run
// `op25b-agent check --refmta http://HOST:PORT/.well-known/op25b-refmta.json`.
func Handler(doc *op25bv1.ReferenceMTA) (http.Handler, error) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("identity: encode document: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DocumentPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write(append(b, '\n'))
	})
	return mux, nil
}
