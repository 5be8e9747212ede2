package middlebox

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/smtpwire"
)

// serve runs h on a loopback port for the duration of the test.
func serve(t *testing.T, h Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, []net.Listener{ln}, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// fakeUpstream stands in for the reference MTA: a banner, then one reply
// per command line. Lines are handed to answer, which returns the reply.
func fakeUpstream(t *testing.T, cfg *tls.Config, answer func(line string) string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "220 upstream.example ESMTP\r\n")
				br := bufio.NewReader(c)
				for {
					line, err := smtpwire.ReadLine(br, smtpwire.MaxLineLen)
					if err != nil {
						return
					}
					io.WriteString(c, answer(line))
					if strings.EqualFold(line, "QUIT") {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func fixed(dst netip.AddrPort) UpstreamFunc {
	return func(net.Conn) (netip.AddrPort, error) { return dst, nil }
}

// client is the agent's side of a dialog.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newClient(t *testing.T, c net.Conn) *client {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) reply() smtpwire.Reply {
	c.t.Helper()
	rep, err := smtpwire.ReadReply(c.br)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return rep
}

func (c *client) cmd(line string) smtpwire.Reply {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
	return c.reply()
}

func TestRelay(t *testing.T) {
	addr := serve(t, &Relay{Hostname: "relay.isp.example", Log: slog.New(slog.DiscardHandler)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c)
	if rep := cl.reply(); rep.Code != 220 || rep.Lines[0] != "relay.isp.example ESMTP" {
		t.Errorf("banner = %q; want 220 relay.isp.example ESMTP", rep.Text())
	}
	rep := cl.cmd("EHLO n00.op25b.invalid")
	caps, token := smtpwire.Capabilities(rep)
	if rep.Code != 250 || len(caps) == 0 || token != "" {
		t.Errorf("EHLO reply = %q; want 250 with capabilities and no proof", rep.Text())
	}
	if rep := cl.cmd("MAIL FROM:<a@example.org>"); rep.Code/100 != 5 {
		t.Errorf("MAIL reply = %q; want a 5xx refusal", rep.Text())
	}
	if rep := cl.cmd("QUIT"); rep.Code != 221 {
		t.Errorf("QUIT reply = %q; want 221", rep.Text())
	}
	if _, err := cl.br.ReadByte(); err != io.EOF {
		t.Errorf("after QUIT: read error %v; want EOF", err)
	}
}

func TestStripperLoopback(t *testing.T) {
	var seen = make(chan string, 10)
	up := fakeUpstream(t, nil, func(line string) string {
		seen <- line
		switch verb, _ := smtpwire.Command(line); verb {
		case "EHLO":
			return "250-upstream.example\r\n250-STARTTLS\r\n250 X-OP25B-PROOF token\r\n"
		case "QUIT":
			return "221 bye\r\n"
		}
		return "500 unrecognized " + line + "\r\n"
	})
	addr := serve(t, &Stripper{Upstream: fixed(up), Log: slog.New(slog.DiscardHandler)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c)
	if rep := cl.reply(); rep.Code != 220 {
		t.Fatalf("banner = %q; want 220", rep.Text())
	}
	rep := cl.cmd("EHLO n00.op25b.invalid")
	if caps, token := smtpwire.Capabilities(rep); len(caps) != 0 || token != "token" {
		t.Errorf("EHLO via stripper = %q; want STARTTLS gone and the proof kept", rep.Text())
	}
	if rep := cl.cmd("STARTTLS"); rep.Code != 500 {
		t.Errorf("STARTTLS via stripper = %q; want the upstream's 500", rep.Text())
	}
	if rep := cl.cmd("QUIT"); rep.Code != 221 {
		t.Errorf("QUIT = %q; want 221", rep.Text())
	}
	if got := []string{<-seen, <-seen, <-seen}; got[1] != "XXXXXXXX" {
		t.Errorf("upstream saw %q; want STARTTLS hidden as XXXXXXXX", got)
	}
}

func TestMITMLoopback(t *testing.T) {
	upCert, err := selfSigned("upstream.example")
	if err != nil {
		t.Fatal(err)
	}
	sni := make(chan string, 1)
	upCfg := &tls.Config{
		Certificates: []tls.Certificate{upCert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			sni <- hello.ServerName
			return nil, nil
		},
	}
	up := fakeUpstream(t, upCfg, func(line string) string {
		if strings.EqualFold(line, "QUIT") {
			return "221 bye\r\n"
		}
		return "250 echo " + line + "\r\n"
	})
	m, err := NewMITM("mitm.isp.example", fixed(up), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, m)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example"})
	if err != nil {
		t.Fatalf("TLS dial via mitm: %v", err)
	}
	cl := newClient(t, c)
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "mitm.isp.example" {
		t.Errorf("certificate presented: CN %q; want the interceptor's mitm.isp.example", got)
	}
	if rep := cl.reply(); rep.Code != 220 || rep.Lines[0] != "upstream.example ESMTP" {
		t.Errorf("banner via mitm = %q; want the upstream's", rep.Text())
	}
	if got := <-sni; got != "mx.example" {
		t.Errorf("upstream SNI = %q; want the client's mx.example", got)
	}
	if rep := cl.cmd("EHLO n00.op25b.invalid"); rep.Text() != "250 echo EHLO n00.op25b.invalid" {
		t.Errorf("EHLO via mitm = %q; want the upstream's echo", rep.Text())
	}
	if rep := cl.cmd("QUIT"); rep.Code != 221 {
		t.Errorf("QUIT = %q; want 221", rep.Text())
	}
}
