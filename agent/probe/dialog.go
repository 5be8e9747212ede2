package probe

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/op25b/observatory/internal/clip"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
)

// observation is everything one dialog saw, before any verdict: decide
// turns it into one. Keeping the two apart lets the verdict rules be tested
// on fabricated observations.
type observation struct {
	dialErr error // no TCP connection
	dials   int   // connections dialled at once
	// phase is where the dialog ended (Phase*).
	phase string
	// deadline is the attempt's deadline from the first SYN, as adapted.
	deadline time.Duration
	// implicit is true on implicit-TLS ports (465, control).
	implicit bool
	// err ended the dialog before the first EHLO was sent: implicit TLS
	// handshake, banner.
	err        error
	bannerCode int    // 0 when no banner was read
	banner     string // evidence, bounded
	// ours is true when the greeting is the reference MTA's
	// (smtpwire.BannerMark); a 220 greeting without it is a third party's.
	ours  bool
	first *hello // the first EHLO; nil when none was sent
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

// valid reports whether h carried a statement valid for our nonce and port
// that served the session.
func (h *hello) valid() bool {
	return h != nil && h.err == nil && h.code == 250 && h.token != "" && h.proofErr == nil && h.st.Refused == ""
}

// refused returns the reason of the reference MTA's signed refusal of this
// session, "" when h is no such refusal.
func (h *hello) refused() string {
	if h == nil || h.err != nil || h.proofErr != nil || !h.signed {
		return ""
	}
	return h.st.Refused
}

// refusal returns why the reference MTA refused the session in a way only
// it can: a signed statement for our nonce and port, or, behind its pinned
// certificate on an implicit-TLS port, a 421 greeting. "" otherwise.
func (o *observation) refusal() string {
	if r := o.first.refused(); r != "" {
		return r
	}
	if r := o.second.refused(); r != "" && o.tls != nil && o.tls.PinValid {
		return r
	}
	if o.implicit && o.tls != nil && o.tls.PinValid && o.bannerCode == 421 {
		return "greeting 421"
	}
	return ""
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

// dialog runs one attempt's conversation with t on port p and records
// what it saw; network failures are recorded, never returned. The
// connection attempt has connect to succeed, with dials connections tried
// at once; once connected, the attempt's deadline (from the first SYN) is
// RTTFactor round trips of the slower of rtt and its own connect time,
// between Timeout and MaxTimeout.
func (r *runner) dialog(ctx context.Context, t Target, p Port, nonce []byte, connect, rtt time.Duration, dials int) *observation {
	o := &observation{phase: PhaseConnect, dials: dials, implicit: p.ImplicitTLS, deadline: connect}
	start := time.Now()
	defer func() { o.timings.Total = time.Since(start) }()
	dctx, cancel := context.WithDeadline(ctx, start.Add(connect))
	defer cancel()
	raw, err := dialParallel(dctx, netip.AddrPortFrom(t.Addr, p.Number).String(), dials)
	if err != nil {
		o.dialErr = err
		return o
	}
	o.timings.Connect = time.Since(start)
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	o.deadline = min(max(RTTFactor*max(rtt, o.timings.Connect), r.cfg.Timeout), r.cfg.MaxTimeout)
	if err := raw.SetDeadline(start.Add(o.deadline)); err != nil {
		o.err = err
		return o
	}
	s := &session{o: o, c: newClient(raw), key: t.Key, nonce: nonce, port: p.Number}
	s.run(p.ImplicitTLS)
	return o
}

// dialParallel dials n connections to addr at once and returns the first
// that connects, closing the others. When all fail, the error of one that
// failed otherwise than by timing out wins: a refusal says more.
func dialParallel(ctx context.Context, addr string, n int) (net.Conn, error) {
	var d net.Dialer
	if n <= 1 {
		return d.DialContext(ctx, "tcp", addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, n)
	for range n {
		go func() {
			c, err := d.DialContext(ctx, "tcp", addr)
			ch <- dialed{c, err}
		}()
	}
	var errs []error
	for i := range n {
		r := <-ch
		if r.err == nil {
			go func() { // the losers, connected or not, once they return
				for range n - 1 - i {
					if l := <-ch; l.c != nil {
						l.c.Close()
					}
				}
			}()
			return r.c, nil
		}
		errs = append(errs, r.err)
	}
	for _, err := range errs {
		if !isTimeout(err) {
			return nil, err
		}
	}
	return nil, errs[0]
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
		o.phase = PhaseTLSHandshake
		if err := s.upgrade(); err != nil {
			o.err = fmt.Errorf("TLS handshake: %w", err)
			// What answered instead of TLS (a plaintext relay, say) is
			// the evidence.
			o.banner = evidenceText(s.c.head.Bytes(), smtpwire.MaxBannerRecord)
			return
		}
	}
	o.phase = PhaseGreeting
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
	o.ours = banner.Code == 220 && strings.Contains(banner.Text(), smtpwire.BannerMark)
	if banner.Code != 220 {
		// A server that greets with anything else will not talk (RFC
		// 5321, 3.1); leave politely.
		s.c.quit()
		return
	}
	o.phase = PhaseEHLO
	t0 = time.Now()
	o.first = s.hello()
	o.timings.EHLO = time.Since(t0)
	if o.first.err != nil {
		return
	}
	if o.first.code != 250 {
		// 421 (a refusal, signed or not) and the like end the session.
		s.c.quit()
		return
	}
	if implicitTLS || !slices.Contains(o.first.caps, "STARTTLS") {
		s.c.quit()
		o.phase = PhaseDone
		return
	}
	// STARTTLS is attempted even after a statement failed: the certificate
	// of whatever answers is evidence.
	o.phase = PhaseSTARTTLS
	if o.tlsErr = s.starttls(); o.tlsErr != nil {
		return
	}
	o.phase = PhaseEHLOTLS
	o.second = s.hello()
	if o.second.err == nil {
		s.c.quit()
		o.phase = PhaseDone
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
	s.o.phase = PhaseSTARTTLSHandshake
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
	info.CertificateSHA256 = sha256Hex(leaf.Raw)
	info.PinValid = proof.CertificateMatches(leaf.Raw, s.key)
	info.Subject = evidenceText([]byte(leaf.Subject.String()), smtpwire.MaxBannerRecord)
	info.Issuer = evidenceText([]byte(leaf.Issuer.String()), smtpwire.MaxBannerRecord)
	info.NotBefore, info.NotAfter = leaf.NotBefore, leaf.NotAfter
	info.SANs = certificateNames(leaf)
	for _, c := range st.PeerCertificates[:min(len(st.PeerCertificates), maxChain)] {
		info.ChainSHA256 = append(info.ChainSHA256, sha256Hex(c.Raw))
	}
	s.o.tls = info
	return nil
}

// Bounds of the certificate evidence kept.
const (
	maxChain = 8
	maxNames = 16
	maxName  = 256
)

// certificateNames returns the subject alternative names of c, bounded.
func certificateNames(c *x509.Certificate) []string {
	var names []string
	add := func(s string) {
		if len(names) < maxNames {
			names = append(names, evidenceText([]byte(s), maxName))
		}
	}
	for _, n := range c.DNSNames {
		add(n)
	}
	for _, ip := range c.IPAddresses {
		add(ip.String())
	}
	for _, e := range c.EmailAddresses {
		add(e)
	}
	for _, u := range c.URIs {
		add(u.String())
	}
	return names
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
	h.caps, h.token = smtpwire.Capabilities(rep)
	h.caps = evidenceList(h.caps)
	if h.token == "" {
		h.proofErr = errNoProof
		if rep.Code != 250 {
			h.proofErr = fmt.Errorf("%w: EHLO answered %d", errNoProof, rep.Code)
		}
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
	case rep.Code != 250 && st.Refused == "":
		// Our statement serves the session only in a 250 reply.
		h.signed, h.st, h.proofErr = true, st, fmt.Errorf("%w: EHLO answered %d", errNoProof, rep.Code)
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
	case h.refused() != "":
		e.ProofError = "the reference MTA refused the session: " + h.refused()
	case o.second == nil || (o.tls != nil && !o.tls.PinValid):
		// Behind a foreign certificate the statement inside TLS is only
		// evidence (see decide).
	case o.second.err != nil:
		// It never arrived: nothing failed to verify.
		e.ProofError = "inside TLS: the EHLO reply did not arrive"
	case !o.second.valid():
		e.ProofValid = false
		e.ProofError = "inside TLS: " + errNoProof.Error()
		if o.second.proofErr != nil {
			e.ProofError = "inside TLS: " + o.second.proofErr.Error()
		}
	}
	return e
}

// evidenceText makes bytes from the network fit for a result: at most max
// bytes, valid UTF-8 (protobuf strings must be), cut on a rune boundary.
// Bytes past the last character that could fit make no difference.
func evidenceText(b []byte, max int) string {
	return clip.Text(string(b[:min(len(b), max+utf8.UTFMax)]), max)
}

func evidenceList(l []string) []string {
	for i, s := range l {
		l[i] = evidenceText([]byte(s), smtpwire.MaxLineLen)
	}
	return l
}
