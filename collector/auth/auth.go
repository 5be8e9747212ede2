// Package auth is enrollment and identity: operators create enrollment
// tokens; an agent or reference MTA trades one (with its Ed25519 public
// key) for a principal id and a bearer credential, which it presents on
// every later call. The database keeps only SHA-256 hashes of tokens and
// credentials, so a copy of it cannot impersonate anyone. A revoked
// principal is refused on its next call.
package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/op25b/observatory/internal/proof"
)

// Kind is what a principal is; the numbers are op25b.v1.PrincipalKind.
type Kind uint8

// The kinds of principal.
const (
	Agent  Kind = 1
	RefMTA Kind = 2
)

func (k Kind) String() string {
	switch k {
	case Agent:
		return "agent"
	case RefMTA:
		return "refmta"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind parses "agent" or "refmta".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "agent":
		return Agent, nil
	case "refmta":
		return RefMTA, nil
	}
	return 0, fmt.Errorf("auth: unknown kind %q (want agent or refmta)", s)
}

// Errors callers map to gRPC codes.
var (
	// ErrUnknown: no such token or credential (Unauthenticated).
	ErrUnknown = errors.New("unknown credential")
	// ErrRevoked: the token or principal was revoked, or the token expired
	// or is used up (PermissionDenied).
	ErrRevoked = errors.New("revoked")
)

// Principal is an enrolled agent or reference MTA.
type Principal struct {
	ID        string
	Kind      Kind
	PublicKey ed25519.PublicKey
	Label     string
	Revoked   bool
}

// Token is an enrollment token as listed (without its secret).
type Token struct {
	ID        string
	Label     string
	Kind      Kind
	MaxUses   int
	Uses      int
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// Service is enrollment and authentication over the collector's database.
type Service struct {
	Pool *pgxpool.Pool
	Now  func() time.Time
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func randomWord(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// CreateToken creates an enrollment token for principals of kind, usable
// maxUses times until expires. The secret is returned once and never
// stored.
func (s *Service) CreateToken(ctx context.Context, label string, kind Kind, expires time.Time, maxUses int) (id, secret string, err error) {
	if maxUses < 1 {
		return "", "", errors.New("auth: a token must allow at least one use")
	}
	id = "tok-" + randomWord(5)
	secret = "op25b-" + kind.String() + "-" + randomWord(20)
	_, err = s.Pool.Exec(ctx, `INSERT INTO enrollment_tokens (token_id, token_hash, label, kind, max_uses, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, hash(secret), label, int16(kind), maxUses, expires)
	if err != nil {
		return "", "", fmt.Errorf("auth: create token: %w", err)
	}
	return id, secret, nil
}

// ListTokens lists every token, newest first.
func (s *Service) ListTokens(ctx context.Context) ([]Token, error) {
	rows, err := s.Pool.Query(ctx, `SELECT token_id, label, kind, max_uses, uses, created_at, expires_at, revoked_at
		FROM enrollment_tokens ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("auth: list tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		var t Token
		var kind int16
		err := r.Scan(&t.ID, &t.Label, &kind, &t.MaxUses, &t.Uses, &t.CreatedAt, &t.ExpiresAt, &t.RevokedAt)
		t.Kind = Kind(kind)
		return t, err
	})
}

// RevokeToken stops a token from enrolling anyone else; principals it
// already enrolled stay enrolled.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	tag, err := s.Pool.Exec(ctx, "UPDATE enrollment_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL", id)
	if err != nil {
		return fmt.Errorf("auth: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("auth: no unrevoked token %q", id)
	}
	return nil
}

// Enroll trades a token for a principal id and a credential.
func (s *Service) Enroll(ctx context.Context, token string, kind Kind, pub ed25519.PublicKey, label, software string) (id, credential string, err error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", "", errors.New("auth: public key is not an Ed25519 key")
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var tokenID string
		var tkind int16
		var maxUses, uses int
		var expires time.Time
		var revoked *time.Time
		err := tx.QueryRow(ctx, `SELECT token_id, kind, max_uses, uses, expires_at, revoked_at FROM enrollment_tokens
			WHERE token_hash = $1 FOR UPDATE`, hash(token)).Scan(&tokenID, &tkind, &maxUses, &uses, &expires, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnknown
		}
		if err != nil {
			return err
		}
		switch {
		case revoked != nil:
			return fmt.Errorf("%w: the enrollment token was revoked", ErrRevoked)
		case !s.Now().Before(expires):
			return fmt.Errorf("%w: the enrollment token expired at %s", ErrRevoked, expires.UTC().Format(time.RFC3339))
		case uses >= maxUses:
			return fmt.Errorf("%w: the enrollment token was already used %d times", ErrRevoked, uses)
		case Kind(tkind) != kind:
			return fmt.Errorf("%w: the token enrolls a %s, not a %s", ErrRevoked, Kind(tkind), kind)
		}
		id = kind.String() + "-" + proof.KeyID(pub)
		credential = id + "." + randomWord(32)
		if _, err := tx.Exec(ctx, "UPDATE enrollment_tokens SET uses = uses + 1 WHERE token_id = $1", tokenID); err != nil {
			return err
		}
		// Enrolling again with the same key (a reinstalled agent that kept
		// its key) replaces the credential; a revoked principal stays revoked.
		tag, err := tx.Exec(ctx, `INSERT INTO principals (principal_id, kind, public_key, credential_hash, label, token_id, software)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (principal_id) DO UPDATE SET credential_hash = EXCLUDED.credential_hash, label = EXCLUDED.label,
				software = EXCLUDED.software WHERE principals.revoked_at IS NULL`,
			id, int16(kind), []byte(pub), hash(credential), label, tokenID, software)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s was revoked", ErrRevoked, id)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrUnknown) || errors.Is(err, ErrRevoked) {
			return "", "", err
		}
		return "", "", fmt.Errorf("auth: enroll: %w", err)
	}
	return id, credential, nil
}

// Authenticate returns the principal a credential belongs to.
func (s *Service) Authenticate(ctx context.Context, credential string) (Principal, error) {
	var p Principal
	var kind int16
	var revoked *time.Time
	err := s.Pool.QueryRow(ctx, `UPDATE principals SET last_seen_at = now() WHERE credential_hash = $1
		RETURNING principal_id, kind, public_key, label, revoked_at`, hash(credential)).Scan(&p.ID, &kind, &p.PublicKey, &p.Label, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ErrUnknown
	}
	if err != nil {
		return p, fmt.Errorf("auth: authenticate: %w", err)
	}
	p.Kind, p.Revoked = Kind(kind), revoked != nil
	if p.Revoked {
		return p, fmt.Errorf("%w: %s was revoked", ErrRevoked, p.ID)
	}
	return p, nil
}

// Revoke revokes a principal: its next call is refused.
func (s *Service) Revoke(ctx context.Context, id string) error {
	tag, err := s.Pool.Exec(ctx, "UPDATE principals SET revoked_at = now() WHERE principal_id = $1 AND revoked_at IS NULL", id)
	if err != nil {
		return fmt.Errorf("auth: revoke: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("auth: no unrevoked principal %q", id)
	}
	return nil
}

// RefMTAKeys returns the public keys of the enrolled, unrevoked reference
// MTAs among ids, by id; an id with no key is not in the map. An error is
// the database's, never "no key": the caller cannot tell which ids have
// keys and must not proceed as if none had.
func (s *Service) RefMTAKeys(ctx context.Context, ids []string) (map[string]ed25519.PublicKey, error) {
	rows, err := s.Pool.Query(ctx, "SELECT principal_id, public_key FROM principals WHERE principal_id = ANY($1) AND kind = $2 AND revoked_at IS NULL",
		ids, int16(RefMTA))
	if err != nil {
		return nil, fmt.Errorf("auth: reference MTA keys: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	var id string
	var pub []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &pub}, func() error {
		keys[id] = ed25519.PublicKey(bytes.Clone(pub))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("auth: reference MTA keys: %w", err)
	}
	return keys, nil
}

// Check returns ErrRevoked when principal id has been revoked since it
// authenticated: long-lived upload streams check before each batch, so a
// revocation takes effect on the next batch, not the next connection.
func (s *Service) Check(ctx context.Context, id string) error {
	var revoked bool
	err := s.Pool.QueryRow(ctx, "SELECT revoked_at IS NOT NULL FROM principals WHERE principal_id = $1", id).Scan(&revoked)
	if err != nil {
		return fmt.Errorf("auth: check %s: %w", id, err)
	}
	if revoked {
		return fmt.Errorf("%w: %s was revoked", ErrRevoked, id)
	}
	return nil
}
