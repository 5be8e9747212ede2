package probe

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
)

// observation is everything one dialog saw, before any verdict: decide
// turns it into one. Keeping the two apart lets the verdict rules be tested
// on fabricated observations.
type observation struct {
	dialErr error // no TCP connection
	// received is true once any byte came back on the TCP connection.
	received bool
	// err ended the dialog before the first EHLO was sent: implicit TLS
	// handshake, banner.
	err        error
	bannerCode int    // 0 when no banner was read
	banner     string // evidence, bounded
	first      *hello // the first EHLO; nil when none was sent
	// tlsErr is a failed STARTTLS: its reply or its handshake.
	tlsErr  error
	tls     *TLS
	second  *hello // the EHLO inside STARTTLS; nil when none was sent
	timings Timings
}

// hello is one EHLO exchange and its statement.
type hello struct {
	err   error // writing EHLO or reading its reply failed
	code  int
	caps  []string
	token string
	// signed is true when the token's signature verified; st is then the
	// reference MTA's word.
	signed bool
	st     proof.Statement
	// proofErr is why the statement is not valid for our nonce and port;
	// nil when it is.
	proofErr error
}

// valid reports whether h carried a statement valid for our nonce and port.
func (h *hello) valid() bool {
	return h != nil && h.err == nil && h.code == 250 && h.token != "" && h.proofErr == nil
}

// Errors that stand for what a statement or a server got wrong.
var (
	errNoProof         = errors.New("no statement in the EHLO reply")
	errOtherNonce      = errors.New("statement is for another nonce")
	errOtherPort       = errors.New("statement is for another port")
	errInjected        = errors.New("data sent after the STARTTLS reply, before the TLS handshake")
	errNoCertificate   = errors.New("no certificate presented")
	errSTARTTLSRefused = errors.New("STARTTLS refused")
)

// dialog runs one probe's conversation with t on port p and records what
// it saw; network failures are recorded, never returned.
func (r *runner) dialog(ctx context.Context, t Target, p Port, nonce []byte) *observation {
	o := &observation{}
	start := time.Now()
	defer func() { o.timings.Total = time.Since(start) }()
	// One deadline for the whole probe: connect, every read, every write
	// and the TLS handshakes all count against it.
	deadline := start.Add(r.cfg.Timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", netip.AddrPortFrom(t.Addr, p.Number).String())
	if err != nil {
		o.dialErr = err
		return o
	}
	o.timings.Connect = time.Since(start)
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if err := raw.SetDeadline(deadline); err != nil {
		o.err = err
		return o
	}
	conn := &countingConn{Conn: raw}
	defer func() { o.received = conn.n > 0 }()
	s := &session{o: o, c: newClient(conn), key: t.Key, nonce: nonce, port: p.Number}
	s.run(p.ImplicitTLS)
	return o
}

// session is the state of one running dialog.
type session struct {
	o     *observation
	c     *client
	key   ed25519.PublicKey
	nonce []byte
	port  uint16
}

func (s *session) run(implicitTLS bool) {
	o := s.o
	if implicitTLS {
		if err := s.upgrade(); err != nil {
			o.err = fmt.Errorf("TLS handshake: %w", err)
			return
		}
	}
	t0 := time.Now()
	banner, err := s.c.reply()
	if err != nil {
		o.err = fmt.Errorf("banner: %w", err)
		o.banner = evidenceText(s.c.head.Bytes(), smtpwire.MaxBannerRecord)
		return
	}
	o.timings.Banner = time.Since(t0)
	o.bannerCode = banner.Code
	o.banner = evidenceText([]byte(banner.Text()), smtpwire.MaxBannerRecord)
	if banner.Code != 220 {
		// A server that greets with anything else will not talk (RFC
		// 5321, 3.1); leave politely.
		s.c.quit()
		return
	}
	t0 = time.Now()
	o.first = s.hello()
	o.timings.EHLO = time.Since(t0)
	if o.first.err != nil {
		return
	}
	if implicitTLS || !slices.Contains(o.first.caps, "STARTTLS") {
		s.c.quit()
		return
	}
	// STARTTLS is attempted even after a statement failed: the certificate
	// of whatever answers is evidence.
	if o.tlsErr = s.starttls(); o.tlsErr != nil {
		return
	}
	o.second = s.hello()
	if o.second.err == nil {
		s.c.quit()
	}
}

// starttls asks for TLS and runs the handshake.
func (s *session) starttls() error {
	if err := s.c.starttls(); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	rep, err := s.c.reply()
	if err != nil {
		return fmt.Errorf("STARTTLS reply: %w", err)
	}
	if rep.Code != 220 {
		s.c.quit()
		return fmt.Errorf("%w: %d reply", errSTARTTLSRefused, rep.Code)
	}
	// Plaintext read ahead of the handshake would be injected into the
	// dialog as if it came over TLS (CVE-2011-0411 and kin).
	if s.c.r.Buffered() > 0 {
		return errInjected
	}
	if err := s.upgrade(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}

// upgrade runs the TLS handshake and records the session. The certificate
// is pinned here rather than verified by crypto/tls so that a foreign one
// is recorded and the dialog goes on: the statement then tells a
// tampered path (our MTA behind a foreign TLS endpoint) from an
// intercepting one.
func (s *session) upgrade() error {
	t0 := time.Now()
	tc, err := s.c.handshake(&tls.Config{
		// No CA vouches for a reference MTA: its key is pinned below.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		// ServerName stays empty: we dial an address, and a client
		// dialling an address sends no SNI; a made-up name would only
		// mark the probe for middleboxes.
	})
	if err != nil {
		return err
	}
	s.o.timings.TLSHandshake = time.Since(t0)
	st := tc.ConnectionState()
	info := &TLS{Version: st.Version, CipherSuite: st.CipherSuite}
	if len(st.PeerCertificates) == 0 {
		return errNoCertificate
	}
	leaf := st.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	info.CertificateSHA256 = hex.EncodeToString(sum[:])
	info.PinValid = proof.CertificateMatches(leaf.Raw, s.key)
	info.Subject = evidenceText([]byte(leaf.Subject.String()), smtpwire.MaxBannerRecord)
	s.o.tls = info
	return nil
}

// hello sends EHLO and checks the statement in its reply.
func (s *session) hello() *hello {
	h := &hello{}
	if err := s.c.ehlo(s.nonce); err != nil {
		h.err = fmt.Errorf("EHLO: %w", err)
		return h
	}
	rep, err := s.c.reply()
	if err != nil {
		h.err = fmt.Errorf("EHLO reply: %w", err)
		return h
	}
	h.code = rep.Code
	if rep.Code != 250 {
		h.proofErr = fmt.Errorf("%w: EHLO answered %d", errNoProof, rep.Code)
		return h
	}
	h.caps, h.token = smtpwire.Capabilities(rep)
	h.caps = evidenceList(h.caps)
	if h.token == "" {
		h.proofErr = errNoProof
		return h
	}
	st, err := proof.Verify(s.key, h.token)
	h.token = evidenceText([]byte(h.token), proof.MaxTokenLen)
	switch {
	case err != nil:
		h.proofErr = err
	case !bytes.Equal(st.Nonce, s.nonce):
		h.signed, h.st, h.proofErr = true, st, errOtherNonce
	case st.Port != s.port:
		h.signed, h.st, h.proofErr = true, st, errOtherPort
	default:
		h.signed, h.st = true, st
	}
	return h
}

// evidence returns what the observation keeps as evidence.
func (o *observation) evidence() Evidence {
	e := Evidence{Banner: o.banner}
	h := o.first
	if h == nil {
		return e
	}
	e.Capabilities = h.caps
	e.Statement = h.token
	e.STARTTLSOffered = slices.Contains(h.caps, "STARTTLS")
	if h.signed {
		e.ObservedSource = h.st.Source
		e.SignedCapabilities = h.st.Capabilities
	}
	e.ProofValid = h.valid()
	switch {
	case h.err != nil:
		e.ProofError = errNoProof.Error()
	case h.proofErr != nil:
		e.ProofError = h.proofErr.Error()
	case o.second != nil && (o.tls == nil || o.tls.PinValid) && !o.second.valid():
		// The statement inside TLS counts too; behind a foreign
		// certificate it is only evidence (see decide).
		e.ProofValid = false
		e.ProofError = "inside TLS: " + errNoProof.Error()
		if o.second.proofErr != nil {
			e.ProofError = "inside TLS: " + o.second.proofErr.Error()
		}
	}
	return e
}

// countingConn counts the bytes received, to tell a peer that never said a
// word from one that said something wrong.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n += int64(n)
	return n, err
}

// evidenceText makes bytes from the network fit for a result: at most max
// bytes, valid UTF-8 (protobuf strings must be), cut on a rune boundary.
func evidenceText(b []byte, max int) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), max)]), "\uFFFD")
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

func evidenceList(l []string) []string {
	for i, s := range l {
		l[i] = evidenceText([]byte(s), smtpwire.MaxLineLen)
	}
	return l
}
