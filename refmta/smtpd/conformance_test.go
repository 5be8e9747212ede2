package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"net/smtp"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

// Conformance: the reference MTA driven by clients we did not write, Go's
// net/smtp and openssl s_client, as mail clients and scanners drive it.

// pinned is the TLS configuration of a client that, like the agent, pins
// the reference MTA's key instead of trusting a CA.
func pinned(s *refmtatest.Server) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !proof.CertificateMatches(cs.PeerCertificates[0].Raw, s.Public()) {
				return errors.New("certificate does not carry the reference MTA key")
			}
			return nil
		},
	}
}

// netSMTP connects Go's net/smtp client to kind, over TLS first on the
// implicit-TLS kinds.
func netSMTP(t *testing.T, s *refmtatest.Server, kind smtpd.Kind) *smtp.Client {
	t.Helper()
	addr := netip.AddrPortFrom(s.Addr, s.Ports[kind]).String()
	d := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	var err error
	if kind == smtpd.SMTPS || kind == smtpd.Control {
		conn, err = tls.DialWithDialer(d, "tcp", addr, pinned(s))
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := smtp.NewClient(conn, "refmta.test")
	if err != nil {
		conn.Close()
		t.Fatalf("net/smtp: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// extensions returns the EHLO keywords net/smtp parsed, the proof excluded,
// sorted, and the proof's statement.
func extensions(t *testing.T, s *refmtatest.Server, c *smtp.Client, nonce []byte) ([]string, proof.Statement) {
	t.Helper()
	var keys []string
	for _, k := range []string{"STARTTLS", "AUTH", "8BITMIME", "ENHANCEDSTATUSCODES", "HELP", "PIPELINING", "SIZE"} {
		if ok, _ := c.Extension(k); ok {
			keys = append(keys, k)
		}
	}
	ok, tok := c.Extension(smtpwire.ProofKeyword)
	if !ok {
		t.Fatalf("net/smtp sees no %s after EHLO with a nonce", smtpwire.ProofKeyword)
	}
	st, err := proof.Verify(s.Public(), tok)
	if err != nil {
		t.Fatalf("statement seen by net/smtp: %v", err)
	}
	if !bytes.Equal(st.Nonce, nonce) {
		t.Errorf("statement nonce = %x; want %x", st.Nonce, nonce)
	}
	slices.Sort(keys)
	return keys, st
}

func TestNetSMTPSubmission(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := netSMTP(t, s, smtpd.Submission)
	n := nonce(t)
	if err := c.Hello(smtpwire.EHLODomain(n)); err != nil {
		t.Fatal(err)
	}
	caps, st := extensions(t, s, c, n)
	if want := []string{"8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"}; !slices.Equal(caps, want) {
		t.Errorf("587 before STARTTLS: net/smtp sees %v; want %v (no AUTH in clear)", caps, want)
	}
	if signed := slices.Sorted(slices.Values(st.Capabilities)); !slices.Equal(signed, caps) {
		t.Errorf("signed capabilities %v; net/smtp sees %v", signed, caps)
	}
	if err := c.StartTLS(pinned(s)); err != nil {
		t.Fatalf("net/smtp StartTLS: %v", err)
	}
	// net/smtp sends EHLO again after the handshake, with the same name.
	caps, st = extensions(t, s, c, n)
	if want := []string{"8BITMIME", "AUTH", "ENHANCEDSTATUSCODES"}; !slices.Equal(caps, want) {
		t.Errorf("587 over TLS: net/smtp sees %v; want %v", caps, want)
	}
	if signed := slices.Sorted(slices.Values(st.Capabilities)); !slices.Equal(signed, caps) {
		t.Errorf("signed capabilities over TLS %v; net/smtp sees %v", signed, caps)
	}
	if _, mechs := c.Extension("AUTH"); mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH mechanisms = %q; want PLAIN LOGIN", mechs)
	}
	help(t, c)
	// A refused AUTH makes net/smtp cancel it and QUIT.
	err := c.Auth(smtp.PlainAuth("", "alice", "secret", "refmta.test"))
	if err == nil || !strings.HasPrefix(err.Error(), "535") {
		t.Errorf("AUTH = %v; want 535", err)
	}
}

// TestNetSMTPPlain: an ordinary client (no nonce) on 25 sees an ordinary
// server that advertises HELP and answers it.
func TestNetSMTPPlain(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	c := netSMTP(t, s, smtpd.SMTP)
	for k, want := range map[string]bool{"STARTTLS": true, "HELP": true, "AUTH": false, smtpwire.ProofKeyword: false} {
		if ok, _ := c.Extension(k); ok != want {
			t.Errorf("25 without a nonce: Extension(%s) = %v; want %v", k, ok, want)
		}
	}
	help(t, c)
	if err := c.Mail("a@example.org"); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Errorf("MAIL = %v; want 550", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("net/smtp Quit: %v", err)
	}
}

func TestNetSMTPImplicitTLS(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	for _, tc := range []struct {
		kind smtpd.Kind
		want []string
	}{
		{smtpd.SMTPS, []string{"8BITMIME", "AUTH", "ENHANCEDSTATUSCODES"}},
		{smtpd.Control, []string{"8BITMIME", "ENHANCEDSTATUSCODES"}},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			c := netSMTP(t, s, tc.kind)
			n := nonce(t)
			if err := c.Hello(smtpwire.EHLODomain(n)); err != nil {
				t.Fatal(err)
			}
			caps, st := extensions(t, s, c, n)
			if !slices.Equal(caps, tc.want) || st.Port != s.Ports[tc.kind] {
				t.Errorf("net/smtp sees %v, statement port %d; want %v, %d", caps, st.Port, tc.want, s.Ports[tc.kind])
			}
			if err := c.StartTLS(pinned(s)); err == nil || !strings.HasPrefix(err.Error(), "503") {
				t.Errorf("StartTLS inside implicit TLS = %v; want 503", err)
			}
			help(t, c)
			if err := c.Quit(); err != nil {
				t.Errorf("net/smtp Quit: %v", err)
			}
		})
	}
}

// help sends HELP with and without an argument through net/smtp's
// textproto connection.
func help(t *testing.T, c *smtp.Client) {
	t.Helper()
	for _, cmd := range []string{"HELP", "HELP STARTTLS"} {
		id, err := c.Text.Cmd("%s", cmd)
		if err != nil {
			t.Fatal(err)
		}
		c.Text.StartResponse(id)
		code, msg, err := c.Text.ReadResponse(214)
		c.Text.EndResponse(id)
		if err != nil {
			t.Errorf("%s = %d %s, %v; want 214", cmd, code, msg, err)
		}
	}
}

// TestTLS12AEADOnly: TLS 1.2 is offered with ECDHE and AEAD suites only;
// a client that offers nothing else but CBC suites fails the handshake.
func TestTLS12AEADOnly(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	aead := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	for _, kind := range []smtpd.Kind{smtpd.SMTP, smtpd.SMTPS} {
		for _, suite := range append(aead, cbc...) {
			cfg := pinned(s)
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{suite}
			st, err := handshake(t, s, kind, cfg)
			wantOK := slices.Contains(aead, suite)
			switch {
			case wantOK && (err != nil || st.CipherSuite != suite):
				t.Errorf("%s, TLS 1.2 with %s only: %v; want it negotiated", kind, tls.CipherSuiteName(suite), err)
			case !wantOK && err == nil:
				t.Errorf("%s, TLS 1.2 with %s only: negotiated; want a handshake failure", kind, tls.CipherSuiteName(suite))
			}
		}
		if st, err := handshake(t, s, kind, pinned(s)); err != nil || st.Version != tls.VersionTLS13 {
			t.Errorf("%s with a default client: version %x, %v; want TLS 1.3", kind, st.Version, err)
		}
		cfg := pinned(s)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		if _, err := handshake(t, s, kind, cfg); err == nil {
			t.Errorf("%s: TLS 1.1 negotiated; want a handshake failure", kind)
		}
	}
}

// handshake runs a TLS handshake with cfg on kind, after STARTTLS on the
// STARTTLS kinds.
func handshake(t *testing.T, s *refmtatest.Server, kind smtpd.Kind, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	conn, err := net.Dial("tcp", netip.AddrPortFrom(s.Addr, s.Ports[kind]).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if kind == smtpd.SMTP || kind == smtpd.Submission {
		c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
		c.read()
		if r := c.cmd("STARTTLS"); r.Code != 220 {
			t.Fatalf("STARTTLS = %s", r.Text())
		}
	}
	tc := tls.Client(conn, cfg)
	err = tc.Handshake()
	return tc.ConnectionState(), err
}

// openssl runs openssl s_client against port with args, stdin as input,
// and returns its standard output and error.
func openssl(t *testing.T, s *refmtatest.Server, port uint16, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	path, lerr := exec.LookPath("openssl")
	if lerr != nil {
		testenv.Unavailable(t, "openssl is not installed: "+lerr.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append([]string{"s_client", "-connect", netip.AddrPortFrom(s.Addr, port).String(), "-brief"}, args...)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestOpenSSL: openssl s_client completes STARTTLS on 25 and 587 and
// implicit TLS on 465 with an AEAD suite, and gets no CBC suite.
func TestOpenSSL(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	// -ign_eof: read the server to its end (and do not take the Q of
	// QUIT for s_client's own quit command); -crlf: SMTP line ends.
	dialog := []string{"-ign_eof", "-crlf"}
	for _, tc := range []struct {
		kind   smtpd.Kind
		args   []string
		suites []string // one of these is negotiated
	}{
		{smtpd.SMTP, []string{"-starttls", "smtp"}, []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}},
		{smtpd.Submission, []string{"-starttls", "smtp", "-tls1_2"}, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
		{smtpd.SMTPS, nil, []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}},
		{smtpd.SMTPS, []string{"-tls1_2"}, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
	} {
		name := tc.kind.String() + strings.Join(tc.args, "")
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := openssl(t, s, s.Ports[tc.kind], "EHLO client.example\nHELP\nQUIT\n", append(dialog, tc.args...)...)
			if err != nil {
				t.Fatalf("openssl s_client: %v\n%s", err, stderr)
			}
			suite := field(stderr, "Ciphersuite")
			if !slices.Contains(tc.suites, suite) {
				t.Errorf("negotiated %q; want one of %v\n%s", suite, tc.suites, stderr)
			}
			for _, want := range []string{"\n214 ", "\n221 "} {
				if !strings.Contains(stdout, want) {
					t.Errorf("the server's replies lack %q:\n%s", want[1:], stdout)
				}
			}
			if tc.kind == smtpd.Submission && !strings.Contains(stdout, "250-AUTH PLAIN LOGIN") {
				t.Errorf("587 after openssl's STARTTLS does not advertise AUTH:\n%s", stdout)
			}
		})
	}
	for _, tc := range []struct {
		kind smtpd.Kind
		args []string
	}{{smtpd.SMTP, []string{"-starttls", "smtp"}}, {smtpd.SMTPS, nil}} {
		t.Run(tc.kind.String()+"-cbc", func(t *testing.T) {
			args := append([]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, tc.args...)
			_, stderr, err := openssl(t, s, s.Ports[tc.kind], "QUIT\n", append(dialog, args...)...)
			if err == nil || field(stderr, "Ciphersuite") != "" {
				t.Errorf("openssl %v: negotiated %q, err %v; want a handshake failure\n%s",
					args, field(stderr, "Ciphersuite"), err, stderr)
			}
		})
	}
}

// field returns the value of "name: value" in openssl -brief output.
func field(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
