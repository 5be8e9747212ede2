// Package proof is the signed statement with which a reference MTA proves
// that an agent reached it unmodified: it binds the agent's per-probe nonce,
// the source address the reference MTA observed, the port and the time, and,
// in SMTP sessions, the EHLO capabilities it advertised. See
// docs/methodology.md, "Proof of reaching our MTA".
//
// The encoded form is one SMTP-safe token, "<payload>.<signature>", both
// unpadded base64url. The payload is canonical text:
//
//	op25b-proof-v1 n=<nonce hex> src=<addr> port=<n> t=<unix ms> caps=<K,K> ports=<n,n>
//
// signed with Ed25519 by the reference MTA's identity key. A reference MTA
// that refuses a session (too busy, or the source over its rate) says so
// in a statement that ends with " refused=<reason>", so that an agent can
// tell our refusal from a third party's; the field is absent otherwise, and
// statements without it are byte for byte those of earlier versions.
package proof

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Version is the first word of every payload; verifiers reject others.
const Version = "op25b-proof-v1"

// Limits that bound what a verifier accepts from the network.
const (
	MaxTokenLen = 1024
	NonceLen    = 16
	maxList     = 32
	maxKeyword  = 64
	maxReason   = 32
)

// Reasons a reference MTA gives in Statement.Refused.
const (
	// RefusedSessions: every session slot of the reference MTA is taken.
	RefusedSessions = "sessions"
	// RefusedRate: the source address is over its rate or its share of
	// concurrent sessions.
	RefusedRate = "rate"
)

// Errors returned by Parse and Verify; wrap them, compare with errors.Is.
var (
	ErrMalformed    = errors.New("malformed statement")
	ErrBadSignature = errors.New("signature does not verify")
)

// Statement is what a reference MTA signs about one session.
type Statement struct {
	Nonce  []byte
	Source netip.Addr // as the reference MTA observed it, unmapped
	Port   uint16     // the local port the session arrived on
	Time   time.Time  // millisecond precision
	// Capabilities are the EHLO keywords advertised in the same reply,
	// upper case, in order; empty outside SMTP.
	Capabilities []string
	// Ports are the SMTP ports the reference MTA serves; set by the control
	// port so that an agent knows a refused port is not merely switched off.
	Ports []uint16
	// Refused is why the reference MTA refused this session (RefusedRate,
	// RefusedSessions, or a reason a later version adds: lower-case
	// letters, digits and '_'); empty when it served it.
	Refused string
}

// Marshal returns the canonical payload that is signed.
func (s Statement) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(Version)
	fmt.Fprintf(&b, " n=%s src=%s port=%d t=%d caps=%s ports=",
		hex.EncodeToString(s.Nonce), s.Source.Unmap(), s.Port, s.Time.UnixMilli(), strings.Join(s.Capabilities, ","))
	for i, p := range s.Ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	if s.Refused != "" {
		b.WriteString(" refused=" + s.Refused)
	}
	return b.Bytes()
}

// Sign returns the encoded, signed statement.
func Sign(key ed25519.PrivateKey, s Statement) string {
	payload := s.Marshal()
	sig := ed25519.Sign(key, payload)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}

// Parse decodes token without checking its signature. It returns the
// statement, the signed payload and the signature.
func Parse(token string) (Statement, []byte, []byte, error) {
	var s Statement
	if len(token) > MaxTokenLen {
		return s, nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), MaxTokenLen)
	}
	p64, s64, ok := strings.Cut(token, ".")
	if !ok {
		return s, nil, nil, fmt.Errorf("%w: no signature", ErrMalformed)
	}
	enc := base64.RawURLEncoding
	payload, err := enc.DecodeString(p64)
	if err != nil {
		return s, nil, nil, fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	sig, err := enc.DecodeString(s64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return s, nil, nil, fmt.Errorf("%w: signature encoding", ErrMalformed)
	}
	s, err = unmarshal(payload)
	if err != nil {
		return s, nil, nil, err
	}
	return s, payload, sig, nil
}

func unmarshal(payload []byte) (Statement, error) {
	var s Statement
	fields := strings.Split(string(payload), " ")
	want := []string{"n", "src", "port", "t", "caps", "ports"}
	if len(fields) == len(want)+2 {
		want = append(want, "refused")
	}
	if len(fields) != len(want)+1 || fields[0] != Version {
		return s, fmt.Errorf("%w: not a %s payload", ErrMalformed, Version)
	}
	vals := make([]string, len(want))
	for i, name := range want {
		k, v, ok := strings.Cut(fields[i+1], "=")
		if !ok || k != name {
			return s, fmt.Errorf("%w: field %d is not %q", ErrMalformed, i+1, name)
		}
		vals[i] = v
	}
	var err error
	if s.Nonce, err = hex.DecodeString(vals[0]); err != nil || len(s.Nonce) != NonceLen {
		return s, fmt.Errorf("%w: nonce", ErrMalformed)
	}
	if s.Source, err = netip.ParseAddr(vals[1]); err != nil || s.Source.Zone() != "" {
		return s, fmt.Errorf("%w: source address", ErrMalformed)
	}
	port, err := strconv.ParseUint(vals[2], 10, 16)
	if err != nil {
		return s, fmt.Errorf("%w: port", ErrMalformed)
	}
	s.Port = uint16(port)
	ms, err := strconv.ParseInt(vals[3], 10, 64)
	if err != nil {
		return s, fmt.Errorf("%w: time", ErrMalformed)
	}
	s.Time = time.UnixMilli(ms).UTC()
	if vals[4] != "" {
		s.Capabilities = strings.Split(vals[4], ",")
		if len(s.Capabilities) > maxList {
			return s, fmt.Errorf("%w: too many capabilities", ErrMalformed)
		}
		for _, c := range s.Capabilities {
			if c == "" || len(c) > maxKeyword {
				return s, fmt.Errorf("%w: capability", ErrMalformed)
			}
		}
	}
	if vals[5] != "" {
		list := strings.Split(vals[5], ",")
		if len(list) > maxList {
			return s, fmt.Errorf("%w: too many ports", ErrMalformed)
		}
		for _, p := range list {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return s, fmt.Errorf("%w: ports", ErrMalformed)
			}
			s.Ports = append(s.Ports, uint16(n))
		}
	}
	if len(vals) > 6 {
		s.Refused = vals[6]
		if !validReason(s.Refused) {
			return s, fmt.Errorf("%w: refusal reason", ErrMalformed)
		}
	}
	// Only the canonical encoding is accepted, so that one statement has
	// exactly one signed form.
	if !bytes.Equal(s.Marshal(), payload) {
		return s, fmt.Errorf("%w: not canonical", ErrMalformed)
	}
	return s, nil
}

func validReason(r string) bool {
	if r == "" || len(r) > maxReason {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Verify parses token and checks its signature against pub.
func Verify(pub ed25519.PublicKey, token string) (Statement, error) {
	s, payload, sig, err := Parse(token)
	if err != nil {
		return s, err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, payload, sig) {
		return s, ErrBadSignature
	}
	return s, nil
}

// CertificateMatches reports whether the DER certificate carries pub as its
// public key: the reference MTA's TLS certificate is bound to its identity
// key, so the agent pins the key, not a CA.
func CertificateMatches(der []byte, pub ed25519.PublicKey) bool {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	k, ok := cert.PublicKey.(ed25519.PublicKey)
	return ok && k.Equal(pub)
}

// KeyID is a short, stable name for a public key: the first 8 bytes of its
// SHA-256, hex. Reference MTAs without a configured id use "refmta-<KeyID>".
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// EncodeKey and DecodeKey give public keys their text form: standard base64
// of the 32 raw bytes, as in identity files and on command lines.
func EncodeKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// DecodeKey parses the text form of EncodeKey.
func DecodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("proof: %q is not a base64 Ed25519 public key", s)
	}
	return ed25519.PublicKey(b), nil
}
