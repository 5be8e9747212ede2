package smtpd_test

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/smtpwire"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

// The session benchmarks measure what one probe costs the reference MTA;
// BenchmarkAcceptClose is the limit they are compared with in BENCHMARKS.md
// (deploy/bench.sh): a server that accepts and closes, on the same loopback
// in the same run, with the same client concurrency.

func BenchmarkAcceptClose(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	b.RunParallel(func(pb *testing.PB) {
		var buf [1]byte
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			c.Read(buf[:]) // EOF when the server closed
			c.Close()
		}
	})
	reportRate(b)
}

func BenchmarkSessionSMTP(b *testing.B)  { benchSession(b, smtpd.SMTP) }
func BenchmarkSessionSMTPS(b *testing.B) { benchSession(b, smtpd.SMTPS) }

// benchSession runs the probe's dialog (banner, EHLO with a nonce, QUIT;
// TLS first on SMTPS) against a real reference MTA.
func benchSession(b *testing.B, kind smtpd.Kind) {
	s := refmtatest.Start(b, "127.0.0.1", func(c *smtpd.Config) { c.MaxSessions = 4096 })
	addr := netip.AddrPortFrom(s.Addr, s.Ports[kind]).String()
	b.RunParallel(func(pb *testing.PB) {
		n := make([]byte, proof.NonceLen)
		for pb.Next() {
			rand.Read(n)
			if err := session(addr, kind, n); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b)
}

func session(addr string, kind smtpd.Kind, nonce []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var conn net.Conn = c
	if kind == smtpd.SMTPS {
		conn = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	}
	r := bufio.NewReader(conn)
	if _, err := smtpwire.ReadReply(r); err != nil {
		return err
	}
	io.WriteString(conn, "EHLO "+smtpwire.EHLODomain(nonce)+"\r\n")
	if _, err := smtpwire.ReadReply(r); err != nil {
		return err
	}
	io.WriteString(conn, "QUIT\r\n")
	_, err = smtpwire.ReadReply(r)
	return err
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
}
