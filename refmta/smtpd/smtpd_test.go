package smtpd_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

// client is a test-only SMTP client; unlike the probe it may send anything.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, s *refmtatest.Server, kind smtpd.Kind) *client {
	t.Helper()
	return dialFrom(t, s, "", kind)
}

// dialFrom is dial from the local address from ("": any).
func dialFrom(t *testing.T, s *refmtatest.Server, from string, kind smtpd.Kind) *client {
	t.Helper()
	var d net.Dialer
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", netip.AddrPortFrom(s.Addr, s.Ports[kind]).String())
	if err != nil && from != "" {
		testenv.Unavailable(t, "cannot connect from "+from+" (Linux routes all of 127.0.0.0/8 to loopback): "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: t, conn: c, r: bufio.NewReader(c)}
	if kind == smtpd.SMTPS || kind == smtpd.Control {
		cl.tls(s)
	}
	return cl
}

func (c *client) tls(s *refmtatest.Server) {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("tls handshake: %v", err)
	}
	if !proof.CertificateMatches(tc.ConnectionState().PeerCertificates[0].Raw, s.Public()) {
		c.t.Errorf("certificate does not carry the reference MTA key")
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *client) read() smtpwire.Reply {
	c.t.Helper()
	r, err := smtpwire.ReadReply(c.r)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return r
}

func (c *client) cmd(line string) smtpwire.Reply {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
	return c.read()
}

func nonce(t *testing.T) []byte {
	n := make([]byte, proof.NonceLen)
	rand.Read(n)
	return n
}

// ehlo sends EHLO with n and checks the statement in the reply.
func (c *client) ehlo(s *refmtatest.Server, n []byte, port uint16) (caps []string, st proof.Statement) {
	c.t.Helper()
	rep := c.cmd("EHLO " + smtpwire.EHLODomain(n))
	if rep.Code != 250 {
		c.t.Fatalf("EHLO: %s", rep.Text())
	}
	caps, tok := smtpwire.Capabilities(rep)
	st, err := proof.Verify(s.Public(), tok)
	if err != nil {
		c.t.Fatalf("EHLO proof %q: %v", tok, err)
	}
	if !bytes.Equal(st.Nonce, n) || st.Port != port || st.Source != s.Addr {
		c.t.Errorf("statement = nonce %x port %d src %s; want %x %d %s", st.Nonce, st.Port, st.Source, n, port, s.Addr)
	}
	if !slices.Equal(st.Capabilities, caps) {
		c.t.Errorf("signed capabilities %v differ from advertised %v", st.Capabilities, caps)
	}
	if d := time.Since(st.Time); d < -time.Second || d > 5*time.Second {
		c.t.Errorf("statement time %v is %v from now", st.Time, d)
	}
	return caps, st
}

func TestSTARTTLSDialog(t *testing.T) {
	for _, tc := range []struct {
		kind     smtpd.Kind
		wantAuth bool // over TLS; never before (RFC 4954, section 4)
	}{{smtpd.SMTP, false}, {smtpd.Submission, true}} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := refmtatest.Start(t, "127.0.0.1", nil)
			c := dial(t, s, tc.kind)
			if b := c.read(); b.Code != 220 {
				t.Fatalf("banner = %s", b.Text())
			}
			n := nonce(t)
			caps, _ := c.ehlo(s, n, s.Ports[tc.kind])
			if !slices.Contains(caps, "STARTTLS") || slices.Contains(caps, "AUTH") {
				t.Errorf("plaintext capabilities = %v; want STARTTLS, no AUTH", caps)
			}
			if r := c.cmd("STARTTLS"); r.Code != 220 {
				t.Fatalf("STARTTLS = %s", r.Text())
			}
			c.tls(s)
			caps, _ = c.ehlo(s, n, s.Ports[tc.kind])
			if slices.Contains(caps, "STARTTLS") || slices.Contains(caps, "AUTH") != tc.wantAuth {
				t.Errorf("capabilities over TLS = %v; want no STARTTLS, AUTH %v", caps, tc.wantAuth)
			}
			if r := c.cmd("STARTTLS"); r.Code != 503 {
				t.Errorf("second STARTTLS = %s; want 503", r.Text())
			}
			if r := c.cmd("QUIT"); r.Code != 221 {
				t.Errorf("QUIT = %s; want 221", r.Text())
			}
			waitSightings(t, s, 1)
			got := s.Sightings.Peek(10)[0]
			if !bytes.Equal(got.Nonce, n) || got.Port != s.Ports[tc.kind] || got.Source != s.Addr || !got.TLS {
				t.Errorf("sighting = %+v; want nonce %x port %d source %s tls", got, n, s.Ports[tc.kind], s.Addr)
			}
		})
	}
}

func waitSightings(t *testing.T, s *refmtatest.Server, n int) {
	t.Helper()
	// The sighting is recorded when the server side of the session ends,
	// which races with the client reading 221.
	for i := 0; i < 200 && s.Sightings.Len() < n; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Sightings.Len(); got != n {
		t.Fatalf("sightings = %d; want %d", got, n)
	}
}

func TestImplicitTLS(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTPS)
	c.read()
	caps, st := c.ehlo(s, nonce(t), s.Ports[smtpd.SMTPS])
	if slices.Contains(caps, "STARTTLS") || !slices.Contains(caps, "AUTH") || st.Ports != nil {
		t.Errorf("465 capabilities = %v, ports %v; want AUTH, no STARTTLS, no ports", caps, st.Ports)
	}
}

func TestControlListsPorts(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			if addr == "::1" {
				testenv.NeedIPv6Loopback(t)
			}
			s := refmtatest.Start(t, addr, nil)
			c := dial(t, s, smtpd.Control)
			c.read()
			_, st := c.ehlo(s, nonce(t), s.Ports[smtpd.Control])
			if !slices.Equal(st.Ports, s.SMTPPorts()) {
				t.Errorf("control statement ports = %v; want %v", st.Ports, s.SMTPPorts())
			}
		})
	}
}

func TestRefusesMail(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.Submission)
	c.read()
	c.cmd("EHLO client.example")
	for _, cmd := range []string{"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>", "DATA", "VRFY root", "EXPN staff", "BDAT 10 LAST", "XCLIENT ADDR=1.2.3.4"} {
		if r := c.cmd(cmd); r.Code < 500 {
			t.Errorf("%s = %s; want 5xx", cmd, r.Text())
		}
	}
	if r := c.cmd("NOOP"); r.Code != 250 {
		t.Errorf("NOOP = %s; want 250", r.Text())
	}
	if n := s.Sightings.Len(); n != 0 {
		t.Errorf("a session without a nonce left %d sightings; want 0", n)
	}
}

func TestNoProofWithoutNonce(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	r := c.cmd("EHLO mail.example.org")
	if _, tok := smtpwire.Capabilities(r); r.Code != 250 || tok != "" {
		t.Errorf("EHLO without nonce = %s; want 250 without a proof", r.Text())
	}
}

func TestTooManyErrorsCloses(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	var last smtpwire.Reply
	for i := 0; i < 10; i++ {
		last = c.cmd("MAIL FROM:<spam@example.org>")
	}
	if last.Code != 421 {
		t.Errorf("10th refused command = %s; want 421", last.Text())
	}
	if _, err := smtpwire.ReadReply(c.r); !errors.Is(err, io.EOF) {
		t.Errorf("after 421 read = %v; want EOF", err)
	}
}

// TestLineTooLong: an over-long command is refused and the session goes
// on; one too long to skip ends the session, and the client still reads
// the reply.
func TestLineTooLong(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	io.WriteString(c.conn, "EHLO "+strings.Repeat("a", 1000)+"\r\nNOOP\r\n")
	if r := c.read(); r.Code != 500 {
		t.Errorf("over-long line = %s; want 500", r.Text())
	}
	if r := c.read(); r.Code != 250 {
		t.Errorf("NOOP after an over-long line = %s; want 250", r.Text())
	}
	if r := c.cmd("EHLO " + strings.Repeat("a", 100000)); r.Code != 500 {
		t.Errorf("100 kB line = %s; want 500", r.Text())
	}
	if _, err := smtpwire.ReadReply(c.r); !errors.Is(err, io.EOF) {
		t.Errorf("after a 100 kB line, read = %v; want the end of the session (EOF, not a reset)", err)
	}
}

// TestLingeringClose: the client reads the last reply and a clean end of
// the session even when it sent more than the server read: closing a
// socket with unread input would send it a reset instead.
func TestLingeringClose(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	for _, kind := range []smtpd.Kind{smtpd.SMTP, smtpd.SMTPS} {
		t.Run(kind.String(), func(t *testing.T) {
			c := dial(t, s, kind)
			c.read()
			io.WriteString(c.conn, "QUIT\r\n"+strings.Repeat("NOOP\r\n", 5000))
			if r := c.read(); r.Code != 221 {
				t.Errorf("QUIT = %s; want 221", r.Text())
			}
			if _, err := smtpwire.ReadReply(c.r); !errors.Is(err, io.EOF) {
				t.Errorf("after 221, read = %v; want EOF", err)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	for _, cmd := range []string{"HELP", "help EHLO"} {
		if r := c.cmd(cmd); r.Code != 214 {
			t.Errorf("%s = %s; want 214", cmd, r.Text())
		}
	}
}

// TestSTARTTLSParameter: RFC 3207, section 4: STARTTLS takes no parameter.
func TestSTARTTLSParameter(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	if r := c.cmd("STARTTLS now"); r.Code != 501 {
		t.Errorf("STARTTLS now = %s; want 501", r.Text())
	}
	if r := c.cmd("STARTTLS"); r.Code != 220 {
		t.Fatalf("STARTTLS = %s; want 220", r.Text())
	}
	c.tls(s)
}

// TestAUTHNeedsTLS: on 587 AUTH is refused before STARTTLS, so that no
// client is invited to send a password in clear.
func TestAUTHNeedsTLS(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := dial(t, s, smtpd.Submission)
	c.read()
	if r := c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); r.Code != 530 {
		t.Errorf("AUTH before STARTTLS = %s; want 530", r.Text())
	}
}

func TestIdleTimeout(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.IdleTimeout = 200 * time.Millisecond })
	c := dial(t, s, smtpd.SMTP)
	c.read()
	start := time.Now()
	if _, err := smtpwire.ReadReply(c.r); err == nil {
		t.Fatalf("idle session got a reply; want it closed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle session closed after %v; want about 200ms", d)
	}
}

// refusedEHLO sends EHLO with a fresh nonce in a refused session and
// checks the signed refusal: a 421 whose last line carries a statement for
// the nonce, the source and the port, refused for reason, advertising
// nothing; then the session ends.
func (c *client) refusedEHLO(s *refmtatest.Server, kind smtpd.Kind, reason string) proof.Statement {
	c.t.Helper()
	n := nonce(c.t)
	rep := c.cmd("EHLO " + smtpwire.EHLODomain(n))
	caps, tok := smtpwire.Capabilities(rep)
	if rep.Code != 421 || len(rep.Lines) != 2 || tok == "" || len(caps) != 0 {
		c.t.Fatalf("EHLO in a refused session = %s; want a 421 with a statement and nothing else", rep.Text())
	}
	st, err := proof.Verify(s.Public(), tok)
	if err != nil {
		c.t.Fatalf("refusal statement %q: %v", tok, err)
	}
	var ports []uint16
	if kind == smtpd.Control {
		ports = s.SMTPPorts()
	}
	if !bytes.Equal(st.Nonce, n) || st.Port != s.Ports[kind] || st.Source != s.Addr || st.Refused != reason ||
		st.Capabilities != nil || !slices.Equal(st.Ports, ports) {
		c.t.Errorf("refusal statement = %+v; want nonce %x, port %d, source %s, refused %q, no capabilities, ports %v",
			st, n, s.Ports[kind], s.Addr, reason, ports)
	}
	c.wantEnd()
	return st
}

// wantEnd checks that the server ended the session cleanly, and closes
// the client's side, as clients do.
func (c *client) wantEnd() {
	c.t.Helper()
	if r, err := smtpwire.ReadReply(c.r); !errors.Is(err, io.EOF) {
		c.t.Errorf("read = %s, %v; want the end of the session", r.Text(), err)
	}
	c.conn.Close()
}

// waitActive waits until the server has n sessions open and no refused
// one: sessions end on the server side after the client saw the end.
func waitActive(t *testing.T, s *refmtatest.Server, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if st := s.Stats(); st.Active == n && st.ActiveRefusals == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("server stats %+v; want %d sessions open and no refusal", s.Stats(), n)
}

// hold opens n sessions on port 25 and keeps them open after the banner.
func hold(t *testing.T, s *refmtatest.Server, n int) []*client {
	t.Helper()
	var held []*client
	for range n {
		c := dial(t, s, smtpd.SMTP)
		if r := c.read(); r.Code != 220 {
			t.Fatalf("banner of held session %d = %s", len(held), r.Text())
		}
		held = append(held, c)
	}
	return held
}

// served checks that a new session on kind is served normally.
func served(t *testing.T, s *refmtatest.Server, kind smtpd.Kind) {
	t.Helper()
	c := dial(t, s, kind)
	if r := c.read(); r.Code != 220 {
		t.Fatalf("banner = %s", r.Text())
	}
	if _, st := c.ehlo(s, nonce(t), s.Ports[kind]); st.Refused != "" {
		t.Errorf("statement of a served session says refused=%s", st.Refused)
	}
	if r := c.cmd("QUIT"); r.Code != 221 {
		t.Errorf("QUIT = %s", r.Text())
	}
	c.wantEnd()
}

// TestRefusedSessions: with every slot taken, a session gets our banner
// (after our TLS handshake on the implicit-TLS kinds) and a signed
// refusal; once the load is gone sessions are served again.
func TestRefusedSessions(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.MaxSessions = 2 })
	held := hold(t, s, 2)
	kinds := []smtpd.Kind{smtpd.SMTP, smtpd.Submission, smtpd.SMTPS, smtpd.Control}
	for _, kind := range kinds {
		c := dial(t, s, kind) // checks our certificate on SMTPS and Control
		if r := c.read(); r.Code != 220 || !strings.Contains(r.Text(), smtpwire.BannerMark) {
			t.Errorf("%s: banner of a refused session = %s; want ours", kind, r.Text())
		}
		c.refusedEHLO(s, kind, proof.RefusedSessions)
	}
	// Other clients get a plain refusal and the end of the session.
	for _, cmd := range []string{"EHLO mail.example.org", "HELO mail.example.org", "QUIT", "EHLO " + strings.Repeat("a", 1000)} {
		c := dial(t, s, smtpd.SMTP)
		c.read()
		if r := c.cmd(cmd); r.Code != 421 || len(r.Lines) != 1 {
			t.Errorf("%.20s in a refused session = %s; want a one-line 421", cmd, r.Text())
		}
		c.wantEnd()
	}
	if n := s.Sightings.Len(); n != 0 {
		t.Errorf("refused sessions left %d sightings; want none", n)
	}
	if st := s.Stats(); st.RefusedSessions != uint64(len(kinds)+4) || st.RefusedRate != 0 || st.Silent != 0 || st.Served != 2 {
		t.Errorf("stats = %+v; want 8 refused for sessions, 2 served", st)
	}
	for _, c := range held {
		c.conn.Close()
	}
	waitActive(t, s, 0)
	for _, kind := range kinds {
		served(t, s, kind)
		waitActive(t, s, 0)
	}
}

// clock is an injected clock that tests move by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock        { c := &clock{}; c.ns.Store(t.UnixNano()); return c }

// TestRefusedRate: a source over its rate is refused, in a statement that
// says so, until its bucket refills.
func TestRefusedRate(t *testing.T) {
	// Behind the real clock, so that statements of served sessions pass
	// the check that they are current.
	clk := newClock(time.Now().Add(-2 * time.Second))
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) {
		c.PerSourceRate, c.PerSourceBurst, c.Now = 1, 2, clk.Now
	})
	served(t, s, smtpd.SMTP)
	served(t, s, smtpd.SMTPS)
	for _, kind := range []smtpd.Kind{smtpd.Submission, smtpd.Control} {
		c := dial(t, s, kind)
		c.read()
		if st := c.refusedEHLO(s, kind, proof.RefusedRate); st.Time.UnixMilli() != clk.Now().UnixMilli() {
			t.Errorf("refusal statement time %v; want the clock's %v", st.Time, clk.Now())
		}
	}
	clk.Advance(time.Second) // one session's worth at 1/s
	served(t, s, smtpd.Submission)
	c := dial(t, s, smtpd.SMTP)
	c.read()
	c.refusedEHLO(s, smtpd.SMTP, proof.RefusedRate)
	if st := s.Stats(); st.Served != 3 || st.RefusedRate != 3 || st.RefusedSessions != 0 {
		t.Errorf("stats = %+v; want 3 served, 3 refused for rate", st)
	}
}

// TestRefusedPerSource: a source at its share of concurrent sessions is
// refused; another source is not, and the source is served again once its
// sessions end.
func TestRefusedPerSource(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.MaxPerSource = 2 })
	held := hold(t, s, 2)
	c := dial(t, s, smtpd.SMTPS)
	c.read()
	c.refusedEHLO(s, smtpd.SMTPS, proof.RefusedRate)

	other := dialFrom(t, s, "127.0.0.2", smtpd.SMTP)
	if r := other.read(); r.Code != 220 {
		t.Fatalf("banner for another source = %s", r.Text())
	}
	if r := other.cmd("EHLO " + smtpwire.EHLODomain(nonce(t))); r.Code != 250 {
		t.Errorf("EHLO from another source = %s; want 250", r.Text())
	}
	held[0].cmd("QUIT")
	held[0].wantEnd()
	waitActive(t, s, 2)
	served(t, s, smtpd.SMTP)
}

// TestRefusalPoolFull: when the refused sessions being answered fill their
// pool too, a connection is closed before any byte: never an unsigned
// refusal.
func TestRefusalPoolFull(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.MaxSessions, c.MaxRefusals = 1, 1 })
	held := hold(t, s, 1)[0]
	refused := dial(t, s, smtpd.SMTP)
	refused.read() // in the refusal pool until it sends a command
	silent := dial(t, s, smtpd.SMTP)
	if b, err := io.ReadAll(silent.r); len(b) != 0 || err != nil {
		t.Errorf("third session read %q, %v; want the end before any byte", b, err)
	}
	if st := s.Stats(); st.Silent != 1 || st.RefusedSessions != 1 || st.Served != 1 {
		t.Errorf("stats = %+v; want 1 served, 1 refused, 1 closed silently", st)
	}
	refused.refusedEHLO(s, smtpd.SMTP, proof.RefusedSessions)
	held.cmd("QUIT")
	held.wantEnd()
	waitActive(t, s, 0)
	served(t, s, smtpd.SMTP)
}

func TestParsePortKind(t *testing.T) {
	for port, want := range map[uint16]smtpd.Kind{25: smtpd.SMTP, 587: smtpd.Submission, 465: smtpd.SMTPS, 443: smtpd.Control, 2525: smtpd.SMTP} {
		if got := smtpd.KindForPort(port); got != want {
			t.Errorf("KindForPort(%d) = %v; want %v", port, got, want)
		}
	}
	for _, k := range []smtpd.Kind{smtpd.SMTP, smtpd.Submission, smtpd.SMTPS, smtpd.Control} {
		if got, err := smtpd.ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := smtpd.ParseKind("pop3"); err == nil {
		t.Errorf("ParseKind(%q) succeeded", "pop3")
	}
}
