package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func key(t *testing.T) ed25519.PublicKey {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return pub
}

func TestEnrollAuthenticateRevoke(t *testing.T) {
	ctx := context.Background()
	s := &Service{Pool: storetest.New(t).Pool, Now: time.Now}
	tokID, secret, err := s.CreateToken(ctx, "isp-edge fleet", Agent, time.Now().Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	id, cred, err := s.Enroll(ctx, secret, Agent, key(t), "box 1", "test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, cred)
	if err != nil || p.ID != id || p.Kind != Agent {
		t.Fatalf("Authenticate = %+v, %v; want %s", p, err, id)
	}
	if _, err := s.Authenticate(ctx, cred+"x"); !errors.Is(err, ErrUnknown) {
		t.Errorf("wrong credential: %v; want ErrUnknown", err)
	}
	if _, err := s.Authenticate(ctx, ""); !errors.Is(err, ErrUnknown) {
		t.Errorf("no credential: %v; want ErrUnknown", err)
	}
	if _, _, err := s.Enroll(ctx, secret, RefMTA, key(t), "", ""); !errors.Is(err, ErrRevoked) {
		t.Errorf("agent token used for a refmta: %v; want ErrRevoked", err)
	}
	if _, _, err := s.Enroll(ctx, secret, Agent, key(t), "box 2", ""); err != nil {
		t.Errorf("second use of a 2-use token: %v", err)
	}
	if _, _, err := s.Enroll(ctx, secret, Agent, key(t), "box 3", ""); !errors.Is(err, ErrRevoked) {
		t.Errorf("third use of a 2-use token: %v; want ErrRevoked", err)
	}
	if _, _, err := s.Enroll(ctx, "op25b-agent-nonsense", Agent, key(t), "", ""); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown token: %v; want ErrUnknown", err)
	}
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, cred); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked principal: %v; want ErrRevoked", err)
	}
	toks, err := s.ListTokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].ID != tokID || toks[0].Uses != 2 {
		t.Errorf("ListTokens = %+v, %v", toks, err)
	}
	if err := s.RevokeToken(ctx, tokID); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, tokID); err == nil {
		t.Errorf("revoking twice succeeded")
	}
}

func TestExpiredToken(t *testing.T) {
	ctx := context.Background()
	s := &Service{Pool: storetest.New(t).Pool, Now: time.Now}
	_, secret, err := s.CreateToken(ctx, "old", RefMTA, time.Now().Add(-time.Minute), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll(ctx, secret, RefMTA, key(t), "", ""); !errors.Is(err, ErrRevoked) {
		t.Errorf("expired token: %v; want ErrRevoked", err)
	}
}

func TestRefMTAKeys(t *testing.T) {
	ctx := context.Background()
	s := &Service{Pool: storetest.New(t).Pool, Now: time.Now}
	_, secret, _ := s.CreateToken(ctx, "refmtas", RefMTA, time.Now().Add(time.Hour), 1)
	pub := key(t)
	id, _, err := s.Enroll(ctx, secret, RefMTA, pub, "mx1", "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.RefMTAKeys(ctx, []string{id, "refmta-unknown"})
	if err != nil || len(keys) != 1 || !keys[id].Equal(pub) {
		t.Errorf("RefMTAKeys(%s, refmta-unknown) = %x, %v; want only %s's key", id, keys, err, id)
	}
}

// TestRefMTAKeysDatabaseError: a lookup the database could not answer is
// an error, not "no key" (issue 10: it was taken for an unknown reference
// MTA, and results lost their signed attribution).
func TestRefMTAKeysDatabaseError(t *testing.T) {
	pool := storetest.New(t).Pool
	s := &Service{Pool: pool, Now: time.Now}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if keys, err := s.RefMTAKeys(canceled, []string{"refmta-x"}); err == nil {
		t.Errorf("RefMTAKeys with a canceled context = %v, nil; want an error", keys)
	}
	pool.Close()
	if keys, err := s.RefMTAKeys(context.Background(), []string{"refmta-x"}); err == nil {
		t.Errorf("RefMTAKeys on a closed pool = %v, nil; want an error", keys)
	}
}
