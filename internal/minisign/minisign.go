// Package minisign writes and checks signatures in the format of minisign
// (https://jedisct1.github.io/minisign/), so that people can verify the
// release's SHA256SUMS with `minisign -Vm SHA256SUMS -p op25b-release.pub`,
// a tool packaged for every major system, instead of one of ours.
//
// Signatures are minisign's Ed25519 signatures of the file itself
// (algorithm "Ed"; minisign verifies them, and signs so with -l), each with
// a trusted comment that a second signature covers.
package minisign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// algorithm is minisign's name for a signature of the file itself.
const algorithm = "Ed"

// KeyID is the 8-byte id that ties a signature to its key; minisign shows
// it in hex. Ours is derived from the public key.
func KeyID(pub ed25519.PublicKey) [8]byte {
	sum := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

// PublicKey returns the content of a minisign public key file for pub.
func PublicKey(pub ed25519.PublicKey, comment string) string {
	id := KeyID(pub)
	raw := append(append([]byte(algorithm), id[:]...), pub...)
	return fmt.Sprintf("untrusted comment: %s\n%s\n", oneLine(comment), base64.StdEncoding.EncodeToString(raw))
}

// Sign returns the content of a .minisig file for msg, whose trusted
// comment (signed too) is trusted.
func Sign(key ed25519.PrivateKey, msg []byte, untrusted, trusted string) string {
	pub := key.Public().(ed25519.PublicKey)
	id := KeyID(pub)
	sig := ed25519.Sign(key, msg)
	trusted = oneLine(trusted)
	global := ed25519.Sign(key, append(append([]byte{}, sig...), trusted...))
	return fmt.Sprintf("untrusted comment: %s\n%s\ntrusted comment: %s\n%s\n", oneLine(untrusted),
		base64.StdEncoding.EncodeToString(append(append([]byte(algorithm), id[:]...), sig...)),
		trusted, base64.StdEncoding.EncodeToString(global))
}

// Verify checks sigFile, a .minisig file's content, against msg and
// pubFile, a public key file's content, and returns the trusted comment.
func Verify(pubFile, sigFile string, msg []byte) (trusted string, err error) {
	pubLines := strings.Split(strings.TrimRight(pubFile, "\n"), "\n")
	if len(pubLines) != 2 || !strings.HasPrefix(pubLines[0], "untrusted comment: ") {
		return "", errors.New("minisign: the public key file is not two lines, a comment and the key")
	}
	raw, err := base64.StdEncoding.DecodeString(pubLines[1])
	if err != nil || len(raw) != 2+8+ed25519.PublicKeySize || string(raw[:2]) != algorithm {
		return "", errors.New("minisign: the public key is not an Ed25519 minisign key")
	}
	keyID, pub := raw[2:10], ed25519.PublicKey(raw[10:])
	lines := strings.Split(strings.TrimRight(sigFile, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "untrusted comment: ") || !strings.HasPrefix(lines[2], "trusted comment: ") {
		return "", errors.New("minisign: the signature file is not four lines: comment, signature, trusted comment, its signature")
	}
	sig, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || len(sig) != 2+8+ed25519.SignatureSize {
		return "", errors.New("minisign: the signature is not a minisign signature")
	}
	switch {
	case string(sig[:2]) == "ED":
		return "", errors.New("minisign: a pre-hashed (ED) signature; this verifier checks Ed signatures only")
	case string(sig[:2]) != algorithm:
		return "", fmt.Errorf("minisign: unknown signature algorithm %q", sig[:2])
	case !bytes.Equal(sig[2:10], keyID):
		return "", fmt.Errorf("minisign: signed by key %X, not by this key %X", sig[2:10], keyID)
	case !ed25519.Verify(pub, msg, sig[10:]):
		return "", errors.New("minisign: the signature does not match the file")
	}
	trusted = strings.TrimPrefix(lines[2], "trusted comment: ")
	global, err := base64.StdEncoding.DecodeString(lines[3])
	if err != nil || !ed25519.Verify(pub, append(append([]byte{}, sig[10:]...), trusted...), global) {
		return "", errors.New("minisign: the trusted comment's signature does not match")
	}
	return trusted, nil
}

// oneLine keeps a comment on its line.
func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }
