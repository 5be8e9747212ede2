// Package smtpd is the reference MTA's SMTP service: just enough SMTP
// (banner, EHLO, STARTTLS, QUIT; implicit TLS on 465 and on the control
// port) for an agent to prove it reached this server unmodified. Every EHLO
// reply ends with a signed statement (internal/proof) binding the agent's
// nonce, the source address seen here, the port and the time. Mail is never
// accepted. Resources are bounded: concurrent sessions, sessions per source,
// line length, idle and total time per session.
//
// The dialog is specified in docs/methodology.md.
package smtpd

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/ratelimit"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/internal/uuidv7"
	"github.com/op25b/observatory/refmta/sighting"
)

// Kind is what a listening port serves.
type Kind int

// The kinds of port.
const (
	// SMTP is MTA-to-MTA SMTP with STARTTLS (port 25).
	SMTP Kind = iota
	// Submission is message submission with STARTTLS, and AUTH advertised
	// once TLS is up (port 587, RFC 6409, RFC 8314).
	Submission
	// SMTPS is submission over implicit TLS (port 465, RFC 8314).
	SMTPS
	// Control is the control port (443): implicit TLS and a statement that
	// also lists the SMTP ports served.
	Control
)

// KindForPort is the default kind of the well-known ports.
func KindForPort(port uint16) Kind {
	switch port {
	case 587:
		return Submission
	case 465:
		return SMTPS
	case 443:
		return Control
	}
	return SMTP
}

// ParseKind parses "smtp", "submission", "smtps" or "control".
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("smtpd: unknown port kind %q (want smtp, submission, smtps or control)", s)
}

var kindNames = [...]string{SMTP: "smtp", Submission: "submission", SMTPS: "smtps", Control: "control"}

func (k Kind) String() string { return kindNames[k] }

func (k Kind) implicitTLS() bool { return k == SMTPS || k == Control }

// Config configures a Server. Zero limits take the defaults below.
type Config struct {
	Key      ed25519.PrivateKey
	Cert     tls.Certificate
	Hostname string
	// SMTPPorts are the SMTP ports this reference MTA serves, signed in
	// control statements.
	SMTPPorts []uint16
	// MaxSessions bounds concurrent sessions over all ports (default 512).
	MaxSessions int
	// PerSourceRate and PerSourceBurst bound new sessions per source
	// address (token bucket; default 5/s, burst 20). A negative rate turns
	// the limit off.
	PerSourceRate  float64
	PerSourceBurst int
	// IdleTimeout bounds the wait for each command (default 30s);
	// SessionTimeout bounds a whole session (default 60s).
	IdleTimeout    time.Duration
	SessionTimeout time.Duration
	// Sightings receives a sighting per session that presented a nonce;
	// nil discards them.
	Sightings *sighting.Queue
	Logger    *slog.Logger
	Now       func() time.Time
}

// Server serves SMTP and control sessions on any number of listeners.
type Server struct {
	cfg     Config
	tls     *tls.Config
	slots   chan struct{}
	limiter *ratelimit.Limiter[netip.Addr]
	wg      sync.WaitGroup
}

// maxErrors closes a session after this many refused commands: a client
// that keeps trying to send mail is not an agent.
const maxErrors = 10

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 512
	}
	if cfg.PerSourceRate == 0 {
		cfg.PerSourceRate = 5
	}
	if cfg.PerSourceBurst <= 0 {
		cfg.PerSourceBurst = 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "refmta.op25b.invalid"
	}
	s := &Server{
		cfg:   cfg,
		slots: make(chan struct{}, cfg.MaxSessions),
		tls: &tls.Config{
			Certificates: []tls.Certificate{cfg.Cert},
			MinVersion:   tls.VersionTLS12,
			// TLS 1.2 with forward secrecy and AEAD only: no CBC, no SHA-1
			// MACs. Our certificate is Ed25519, so the ECDSA suites are the
			// ones negotiated; the RSA ones serve a certificate given in
			// tests. TLS 1.3's suites are all AEAD and not configurable.
			CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
				tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
			},
		},
	}
	if cfg.PerSourceRate > 0 {
		s.limiter = ratelimit.New[netip.Addr](cfg.PerSourceRate, cfg.PerSourceBurst, cfg.Now)
	}
	return s
}

// Serve accepts sessions on ln, which serves kind, until ctx is done; it
// then closes ln and waits for its sessions to end. Temporary accept errors
// (such as running out of file descriptors) are logged and retried.
func (s *Server) Serve(ctx context.Context, ln net.Listener, kind Kind) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("accept failed; retrying", "kind", kind, "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c, kind)
		}()
	}
}

// handle runs one session on c and always closes it.
func (s *Server) handle(ctx context.Context, c net.Conn, kind Kind) {
	src, port := addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "421 4.3.2 Too many sessions, try again later\r\n")
		c.Close()
		return
	}
	if s.limiter != nil && !s.limiter.Allow(src.Addr().Unmap()) {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "421 4.7.0 Too many sessions from your address, slow down\r\n")
		c.Close()
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	ss := &session{srv: s, kind: kind, src: src.Addr().Unmap(), port: port.Port(), raw: c, conn: c,
		deadline: time.Now().Add(s.cfg.SessionTimeout)}
	err := ss.run()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.cfg.Logger.Debug("session ended", "kind", kind, "port", ss.port, "err", withoutAddresses(err))
	}
	if ss.nonce != nil && s.cfg.Sightings != nil {
		now := s.cfg.Now()
		s.cfg.Sightings.Add(sighting.Sighting{ID: uuidv7.New(now), Nonce: ss.nonce,
			Source: ss.src, Port: ss.port, Time: now, TLS: ss.tlsDone})
	}
	ss.close()
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// withoutAddresses is err for the log: a network error names both ends of
// the connection, and volunteers' addresses never reach the logs.
func withoutAddresses(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

type session struct {
	srv      *Server
	kind     Kind
	src      netip.Addr
	port     uint16
	raw      net.Conn // the TCP connection
	conn     net.Conn // raw, or the TLS connection over it
	r        *bufio.Reader
	deadline time.Time
	tlsDone  bool
	nonce    []byte
	errors   int
}

// Lingering close (see close): how long, and how many bytes, the client's
// last input is read and discarded after our last reply.
const (
	lingerTimeout = 2 * time.Second
	lingerBytes   = 64 << 10
)

func (ss *session) run() error {
	if ss.kind.implicitTLS() {
		if err := ss.startTLS(); err != nil {
			return err
		}
	} else {
		ss.r = bufio.NewReaderSize(ss.conn, 1024)
	}
	banner := "220 " + ss.srv.cfg.Hostname + " ESMTP OP25B Observatory reference MTA; no mail accepted"
	if ss.kind == Control {
		banner = "220 " + ss.srv.cfg.Hostname + " OP25B Observatory control"
	}
	if err := ss.reply(banner); err != nil {
		return err
	}
	for {
		ss.setDeadline(ss.srv.cfg.IdleTimeout)
		line, err := smtpwire.ReadCommand(ss.r)
		if errors.Is(err, smtpwire.ErrLineTooLong) {
			// The rest of the line was read: the session goes on.
			if err := ss.refuse("500 5.5.2 Line too long"); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, smtpwire.ErrLineEndless) {
			ss.reply("500 5.5.2 Line too long")
			return err
		}
		if err != nil {
			return err
		}
		if quit, err := ss.command(line); quit || err != nil {
			return err
		}
	}
}

// command answers one command line; quit is true when the session is over.
func (ss *session) command(line string) (quit bool, err error) {
	verb, arg := smtpwire.Command(line)
	switch verb {
	case "EHLO":
		if arg == "" {
			return false, ss.refuse("501 5.5.4 EHLO needs a domain")
		}
		if n, ok := smtpwire.NonceFromEHLO(arg); ok {
			ss.nonce = n
		}
		return false, ss.ehlo()
	case "HELO":
		return false, ss.reply("250 " + ss.srv.cfg.Hostname)
	case "STARTTLS":
		switch {
		case arg != "": // RFC 3207, section 4
			return false, ss.refuse("501 5.5.4 STARTTLS takes no parameters")
		case ss.tlsDone || ss.kind.implicitTLS():
			return false, ss.refuse("503 5.5.1 TLS already active")
		}
		if err := ss.reply("220 2.0.0 Ready to start TLS"); err != nil {
			return false, err
		}
		return false, ss.startTLS()
	case "QUIT":
		return true, ss.reply("221 2.0.0 Bye")
	case "NOOP", "RSET":
		return false, ss.reply("250 2.0.0 OK")
	case "HELP":
		return false, ss.reply("214 2.0.0 " + ss.srv.cfg.Hostname + " is an OP25B Observatory reference MTA: it accepts no mail." +
			" Commands: EHLO HELO STARTTLS NOOP RSET HELP QUIT")
	case "MAIL", "RCPT", "DATA", "BDAT":
		return false, ss.refuse("550 5.7.1 This is an OP25B Observatory reference MTA; it accepts no mail")
	case "AUTH":
		if ss.kind == Submission && !ss.tlsDone {
			return false, ss.refuse("530 5.7.0 Must issue a STARTTLS command first")
		}
		return false, ss.refuse("535 5.7.8 Authentication is never accepted here")
	case "VRFY", "EXPN":
		return false, ss.refuse("502 5.5.1 Command not implemented")
	}
	return false, ss.refuse("500 5.5.2 Command unrecognized")
}

// refuse answers a refused command and ends sessions that keep trying.
func (ss *session) refuse(reply string) error {
	ss.errors++
	if ss.errors >= maxErrors {
		ss.reply("421 4.7.0 Too many errors, closing")
		return errors.New("too many refused commands")
	}
	return ss.reply(reply)
}

// capabilities are the EHLO keywords of this session's state, in the order
// they are sent and signed. AUTH is offered only over TLS (RFC 4954,
// section 4; RFC 8314), so that no client sends a password in clear.
func (ss *session) capabilities() []string {
	caps := []string{"ENHANCEDSTATUSCODES", "8BITMIME"}
	if (ss.kind == SMTP || ss.kind == Submission) && !ss.tlsDone {
		caps = append(caps, "STARTTLS")
	}
	if ss.kind == SMTPS || (ss.kind == Submission && ss.tlsDone) {
		caps = append(caps, "AUTH PLAIN LOGIN")
	}
	return caps
}

func (ss *session) ehlo() error {
	caps := ss.capabilities()
	var b strings.Builder
	fmt.Fprintf(&b, "250-%s greets [%s]\r\n", ss.srv.cfg.Hostname, ss.src)
	keywords := make([]string, len(caps))
	for i, c := range caps {
		fmt.Fprintf(&b, "250-%s\r\n", c)
		keywords[i], _, _ = strings.Cut(c, " ")
	}
	if ss.nonce != nil {
		st := proof.Statement{Nonce: ss.nonce, Source: ss.src, Port: ss.port,
			Time: ss.srv.cfg.Now(), Capabilities: keywords}
		if ss.kind == Control {
			st.Ports = ss.srv.cfg.SMTPPorts
		}
		fmt.Fprintf(&b, "250 %s %s", smtpwire.ProofKeyword, proof.Sign(ss.srv.cfg.Key, st))
	} else {
		// Without a nonce there is nothing to bind: plain SMTP clients get
		// an ordinary EHLO reply.
		b.WriteString("250 HELP")
	}
	return ss.reply(b.String())
}

func (ss *session) startTLS() error {
	ss.setDeadline(ss.srv.cfg.IdleTimeout)
	tc := tls.Server(ss.conn, ss.srv.tls)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	ss.conn, ss.tlsDone = tc, true
	// RFC 3207: after STARTTLS the client starts over; discard any state
	// (and anything pipelined before the handshake).
	ss.r = bufio.NewReaderSize(tc, 1024)
	return nil
}

func (ss *session) setDeadline(idle time.Duration) {
	d := time.Now().Add(idle)
	if d.After(ss.deadline) {
		d = ss.deadline
	}
	ss.conn.SetDeadline(d)
}

func (ss *session) reply(s string) error {
	_, err := io.WriteString(ss.conn, s+"\r\n")
	return err
}

// close ends the session so that the client gets our last reply. Closing a
// socket with unread input makes the kernel send a reset, which can destroy
// the reply still in flight; so the end of our side is signalled first
// (TLS close_notify, then a TCP FIN), and what the client still sends is
// read and discarded, for a bounded time and amount, until its own close.
func (ss *session) close() {
	defer ss.raw.Close()
	if tc, ok := ss.conn.(*tls.Conn); ok {
		tc.CloseWrite() // sends close_notify; fails harmlessly before the handshake completed
	}
	cw, ok := ss.raw.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	ss.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, io.LimitReader(ss.raw, lingerBytes))
}
