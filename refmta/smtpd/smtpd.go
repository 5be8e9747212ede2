// Package smtpd is the reference MTA's SMTP service: just enough SMTP
// (banner, EHLO, STARTTLS, QUIT; implicit TLS on 465 and on the control
// port) for an agent to prove it reached this server unmodified. Every EHLO
// reply ends with a signed statement (internal/proof) binding the agent's
// nonce, the source address seen here, the port and the time. Mail is never
// accepted. Resources are bounded: concurrent sessions, sessions per source
// (rate and concurrency), line length, idle and total time per session.
//
// A session over a limit is refused verifiably, so that an agent can tell
// our refusal from a third party's: it gets the normal banner (after the
// TLS handshake on implicit-TLS ports), and its EHLO with a nonce is
// answered
//
//	421-<hostname> busy: <why>, try again later
//	421 X-OP25B-PROOF <statement with refused=sessions or refused=rate>
//
// and the session ends. Any other first command gets a plain 421. Refused
// sessions have their own small pool; when it is full too, the connection
// is closed without a byte. Nothing unsigned is ever written in place of
// the banner.
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
	"sync/atomic"
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

// Default limits, sized so that thousands of agents behind one carrier-grade
// NAT address are served; docs/operator.md ("Limits") gives the reasoning.
const (
	DefaultMaxSessions    = 2048
	DefaultMaxPerSource   = 256
	DefaultMaxRefusals    = 256
	DefaultPerSourceRate  = 50
	DefaultPerSourceBurst = 500
	DefaultIdleTimeout    = 10 * time.Second
	// DefaultSessionTimeout stays above AgentDeadline, so that we never
	// cut off an agent on a slow path.
	DefaultSessionTimeout = 60 * time.Second
)

// AgentDeadline is the longest an agent gives one dialog (agent/probe's
// DefaultMaxTimeout, on the slowest paths).
const AgentDeadline = 30 * time.Second

// RefusalTimeout bounds a refused session: its TLS handshake, banner, one
// command and the refusal (the lingering close comes on top).
const RefusalTimeout = 10 * time.Second

// Config configures a Server. Zero limits take the defaults above.
type Config struct {
	Key      ed25519.PrivateKey
	Cert     tls.Certificate
	Hostname string
	// SMTPPorts are the SMTP ports this reference MTA serves, signed in
	// control statements.
	SMTPPorts []uint16
	// MaxSessions bounds concurrent sessions over all ports; a session
	// beyond it is refused (proof.RefusedSessions).
	MaxSessions int
	// MaxPerSource bounds the concurrent sessions of one source, and
	// PerSourceRate and PerSourceBurst its new sessions (token bucket); a
	// session beyond either is refused (proof.RefusedRate). A source is an
	// IPv4 address or an IPv6 /64. A negative rate turns the rate off.
	MaxPerSource   int
	PerSourceRate  float64
	PerSourceBurst int
	// MaxRefusals bounds the refused sessions being answered at once;
	// beyond it a connection is closed without a byte.
	MaxRefusals int
	// IdleTimeout bounds the wait for each command; SessionTimeout bounds a
	// whole session.
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
	cfg      Config
	tls      *tls.Config
	slots    chan struct{} // one per session served
	refusals chan struct{} // one per refused session being answered
	limiter  *ratelimit.Limiter[netip.Prefix]
	mu       sync.Mutex
	sources  map[netip.Prefix]int // sessions served per source
	counts   struct {
		served, refusedSessions, refusedRate, silent atomic.Uint64
	}
	wg sync.WaitGroup
}

// Stats counts a Server's sessions since it started.
type Stats struct {
	Served uint64 // sessions served
	// RefusedSessions and RefusedRate count the refused sessions answered
	// with the refusal dialog, by reason (proof.RefusedSessions,
	// proof.RefusedRate).
	RefusedSessions, RefusedRate uint64
	// Silent counts connections closed without a byte: refused while the
	// refusal pool was full too.
	Silent uint64
	// Active and ActiveRefusals are the sessions open now, served and
	// refused.
	Active, ActiveRefusals int
}

// Stats returns the counters of s.
func (s *Server) Stats() Stats {
	return Stats{Served: s.counts.served.Load(), RefusedSessions: s.counts.refusedSessions.Load(),
		RefusedRate: s.counts.refusedRate.Load(), Silent: s.counts.silent.Load(),
		Active: len(s.slots), ActiveRefusals: len(s.refusals)}
}

// maxErrors closes a session after this many refused commands: a client
// that keeps trying to send mail is not an agent.
const maxErrors = 10

// New returns a Server for cfg.
func New(cfg Config) *Server {
	orDefault(&cfg.MaxSessions, DefaultMaxSessions)
	orDefault(&cfg.MaxPerSource, DefaultMaxPerSource)
	orDefault(&cfg.MaxRefusals, DefaultMaxRefusals)
	orDefault(&cfg.PerSourceBurst, DefaultPerSourceBurst)
	orDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	orDefault(&cfg.SessionTimeout, DefaultSessionTimeout)
	if cfg.PerSourceRate == 0 {
		cfg.PerSourceRate = DefaultPerSourceRate
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
		cfg:      cfg,
		slots:    make(chan struct{}, cfg.MaxSessions),
		refusals: make(chan struct{}, cfg.MaxRefusals),
		sources:  map[netip.Prefix]int{},
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
		s.limiter = ratelimit.New[netip.Prefix](cfg.PerSourceRate, cfg.PerSourceBurst, cfg.Now)
	}
	return s
}

func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
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

// handle runs one session on c, served or refused, and always closes it.
func (s *Server) handle(ctx context.Context, c net.Conn, kind Kind) {
	src, port := addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	ss := &session{srv: s, kind: kind, src: src.Addr().Unmap(), port: port.Port(), raw: c, conn: c}
	key := sourceKey(ss.src)
	timeout := s.cfg.SessionTimeout
	if ss.refused = s.admit(key); ss.refused == "" {
		s.counts.served.Add(1)
		defer s.release(key)
	} else {
		select {
		case s.refusals <- struct{}{}:
			defer func() { <-s.refusals }()
		default:
			// Even a refusal would cost more than we have: the agent sees a
			// connection closed before any byte, which proves nothing
			// either way.
			s.counts.silent.Add(1)
			c.Close()
			return
		}
		if ss.refused == proof.RefusedSessions {
			s.counts.refusedSessions.Add(1)
		} else {
			s.counts.refusedRate.Add(1)
		}
		timeout = RefusalTimeout
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	ss.deadline = time.Now().Add(timeout)
	err := ss.run()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.cfg.Logger.Debug("session ended", "kind", kind, "port", ss.port, "refused", ss.refused, "err", withoutAddresses(err))
	}
	if ss.nonce != nil && s.cfg.Sightings != nil {
		now := s.cfg.Now()
		s.cfg.Sightings.Add(sighting.Sighting{ID: uuidv7.New(now), Nonce: ss.nonce,
			Source: ss.src, Port: ss.port, Time: now, TLS: ss.tlsDone})
	}
	ss.close()
}

// admit takes a session slot for a session from source k and returns "",
// or returns why the session is refused.
func (s *Server) admit(k netip.Prefix) (refused string) {
	select {
	case s.slots <- struct{}{}:
	default:
		return proof.RefusedSessions
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sources[k] >= s.cfg.MaxPerSource || (s.limiter != nil && !s.limiter.Allow(k)) {
		<-s.slots
		return proof.RefusedRate
	}
	s.sources[k]++
	return ""
}

// release returns the slot admit took.
func (s *Server) release(k netip.Prefix) {
	s.mu.Lock()
	if s.sources[k]--; s.sources[k] == 0 {
		delete(s.sources, k)
	}
	s.mu.Unlock()
	<-s.slots
}

// sourceKey is the source that per-source limits count: the IPv4 address
// (behind a carrier-grade NAT, one address is thousands of customers), or
// the IPv6 /64, since one customer holds at least a /64 and may use any
// address in it.
func sourceKey(a netip.Addr) netip.Prefix {
	if a = a.Unmap(); a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
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
	refused  string // why the session is refused (proof.Refused*), "" when served
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
	// Agents tell our greeting from a third party's by smtpwire.BannerMark.
	banner := "220 " + ss.srv.cfg.Hostname + " ESMTP " + smtpwire.BannerMark + " reference MTA; no mail accepted"
	if ss.kind == Control {
		banner = "220 " + ss.srv.cfg.Hostname + " " + smtpwire.BannerMark + " control"
	}
	if err := ss.reply(banner); err != nil {
		return err
	}
	if ss.refused != "" {
		return ss.busy()
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
		fmt.Fprintf(&b, "250 %s %s", smtpwire.ProofKeyword, ss.sign(ss.statement(ss.nonce, keywords)))
	} else {
		// Without a nonce there is nothing to bind: plain SMTP clients get
		// an ordinary EHLO reply.
		b.WriteString("250 HELP")
	}
	return ss.reply(b.String())
}

// statement is what the session signs for nonce, with the capabilities
// advertised in the same reply.
func (ss *session) statement(nonce []byte, caps []string) proof.Statement {
	st := proof.Statement{Nonce: nonce, Source: ss.src, Port: ss.port, Time: ss.srv.cfg.Now(),
		Capabilities: caps, Refused: ss.refused}
	if ss.kind == Control {
		st.Ports = ss.srv.cfg.SMTPPorts
	}
	return st
}

func (ss *session) sign(st proof.Statement) string { return proof.Sign(ss.srv.cfg.Key, st) }

// busyText says why a session is refused, in the refusal's first line.
var busyText = map[string]string{
	proof.RefusedSessions: "every session slot is taken",
	proof.RefusedRate:     "too many sessions from your address",
}

// busy answers the first command of a refused session, which then ends: an
// EHLO with a nonce gets the refusal signed for that nonce, with no
// capabilities (the reply advertises none), anything else a plain 421.
func (ss *session) busy() error {
	ss.setDeadline(ss.srv.cfg.IdleTimeout)
	line, err := smtpwire.ReadCommand(ss.r)
	if err != nil && !errors.Is(err, smtpwire.ErrLineTooLong) && !errors.Is(err, smtpwire.ErrLineEndless) {
		return err
	}
	verb, arg := smtpwire.Command(line)
	n, ok := smtpwire.NonceFromEHLO(arg)
	if verb != "EHLO" || !ok {
		return ss.reply("421 4.3.2 " + ss.srv.cfg.Hostname + " busy, try again later")
	}
	return ss.reply(fmt.Sprintf("421-%s busy: %s, try again later\r\n421 %s %s",
		ss.srv.cfg.Hostname, busyText[ss.refused], smtpwire.ProofKeyword, ss.sign(ss.statement(n, nil))))
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
