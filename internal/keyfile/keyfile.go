// Package keyfile keeps secrets on disk the way a daemon on a shared host
// must: an Ed25519 identity key (PEM, PKCS #8) and bearer credentials, each
// written atomically with mode 0600 and refused when others can read them.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreate reads the PEM (PKCS #8) Ed25519 key at path, or generates
// one and stores it with mode 0600 when the file does not exist. A key file
// that others can read is refused: whoever holds the key can forge proofs.
func LoadOrCreate(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(path)
		return key, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("keyfile: read key: %w", err)
	}
	if err := private(path); err != nil {
		return nil, false, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("keyfile: %s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("keyfile: parse key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("keyfile: %s holds a %T, want an Ed25519 key", path, k)
	}
	return key, false, nil
}

func create(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keyfile: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keyfile: encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	// O_EXCL: two instances starting at once must not overwrite each
	// other's fresh key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyfile: create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("keyfile: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("keyfile: write key: %w", err)
	}
	return key, nil
}

// WriteSecret stores secret at path with mode 0600, atomically.
func WriteSecret(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}

// ReadSecret reads a secret WriteSecret stored; fs.ErrNotExist (wrapped)
// when there is none.
func ReadSecret(path string) (string, error) {
	if err := private(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("keyfile: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// private refuses files that group or others can read.
func private(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("keyfile: %s has mode %04o; want 0600 (chmod 600 it)", path, st.Mode().Perm())
	}
	return nil
}
