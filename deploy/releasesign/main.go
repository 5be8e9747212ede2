// Command releasesign signs a release directory's SHA256SUMS in minisign's
// format (internal/minisign) and writes the public key beside it; `make
// release` runs it (deploy/release.sh).
//
//	go run ./deploy/releasesign --key FILE --version V DIR
//
// The key is a PEM Ed25519 key (mode 0600), made on first use: keep it, and
// publish its public key (DIR/op25b-release.pub) where people will find it
// apart from the downloads, so that a replaced download and a replaced key
// cannot come together.
package main

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/op25b/observatory/internal/keyfile"
	"github.com/op25b/observatory/internal/minisign"
)

func main() {
	keyPath := flag.String("key", "", "the release signing key (PEM Ed25519, 0600); made when missing (required)")
	version := flag.String("version", "", "the release's version, in the signed comment (required)")
	flag.Parse()
	if *keyPath == "" || *version == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: releasesign --key FILE --version VERSION DIR")
		os.Exit(2)
	}
	if err := run(*keyPath, *version, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "releasesign:", err)
		os.Exit(1)
	}
}

func run(keyPath, version, dir string) error {
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	key, created, err := keyfile.LoadOrCreate(keyPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(os.Stderr, "releasesign: made a new release key at %s: keep it, and publish op25b-release.pub apart from the downloads\n", keyPath)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return err
	}
	pub := key.Public().(ed25519.PublicKey)
	id := minisign.KeyID(pub)
	sig := minisign.Sign(key, sums, fmt.Sprintf("op25b-agent release signature from key %X", id),
		fmt.Sprintf("op25b-agent %s SHA256SUMS, signed %s", version, time.Now().UTC().Format(time.RFC3339)))
	pubFile := minisign.PublicKey(pub, fmt.Sprintf("op25b-agent release key %X", id))
	if _, err := minisign.Verify(pubFile, sig, sums); err != nil {
		return fmt.Errorf("the signature just made does not verify: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS.minisig"), []byte(sig), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "op25b-release.pub"), []byte(pubFile), 0o644)
}
