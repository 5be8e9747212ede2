// Package identity is the reference MTA's identity: the Ed25519 key that
// signs every statement (internal/proof), the TLS certificate bound to that
// key so that agents pin the key rather than trust a CA, and the identity
// document agents read (the protojson of op25bv1.ReferenceMTA).
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// LoadOrCreateKey reads the PEM (PKCS #8) Ed25519 key at path, or generates
// one and stores it with mode 0600 when the file does not exist. A key file
// that others can read is refused: whoever holds the key can forge proofs.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(path)
		return key, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("identity: read key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("identity: stat key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("identity: key file %s has mode %04o; want 0600 (chmod 600 it)", path, st.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("identity: %s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("identity: parse key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("identity: %s holds a %T, want an Ed25519 key", path, k)
	}
	return key, false, nil
}

func create(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	// O_EXCL: two instances starting at once must not overwrite each
	// other's fresh key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("identity: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("identity: write key: %w", err)
	}
	return key, nil
}

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
