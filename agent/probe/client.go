package probe

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"

	"github.com/op25b/observatory/internal/smtpwire"
)

// client is the probe's end of one SMTP dialog. It is the only code in this
// package that writes to a connection, and its only write methods are ehlo,
// starttls and quit: a probe never sends mail (DESIGN.md), and not because
// it is careful but because it has no way to. There is deliberately no
// generic "send a line" method. client_test.go checks both the bytes on the
// wire and this package's source.
type client struct {
	conn net.Conn // the TCP connection, or TLS over it
	r    *bufio.Reader
	// head keeps the first bytes read from conn: when a greeting is not
	// SMTP, they are the evidence.
	head *head
}

func newClient(conn net.Conn) *client {
	c := &client{}
	c.use(conn)
	return c
}

// use makes conn the connection of the dialog.
func (c *client) use(conn net.Conn) {
	c.conn = conn
	c.head = &head{r: conn}
	c.r = bufio.NewReaderSize(c.head, 4096)
}

// ehlo sends EHLO with the domain that carries nonce.
func (c *client) ehlo(nonce []byte) error {
	_, err := io.WriteString(c.conn, "EHLO "+smtpwire.EHLODomain(nonce)+"\r\n")
	return err
}

// starttls sends STARTTLS.
func (c *client) starttls() error {
	_, err := io.WriteString(c.conn, "STARTTLS\r\n")
	return err
}

// quit sends QUIT. Its reply is not awaited: by then the probe has all it
// needs, and a server that never answers must not cost a deadline.
func (c *client) quit() error {
	_, err := io.WriteString(c.conn, "QUIT\r\n")
	return err
}

// reply reads one reply, bounded by internal/smtpwire.
func (c *client) reply() (smtpwire.Reply, error) {
	return smtpwire.ReadReply(c.r)
}

// handshake runs a TLS client handshake over the connection and continues
// the dialog inside it. Bytes buffered before the handshake are dropped, as
// RFC 3207 requires; the caller treats their presence as an error first.
func (c *client) handshake(cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	c.use(tc)
	return tc, nil
}

// head is a reader that keeps a copy of the first bytes it reads.
type head struct {
	r   io.Reader
	buf []byte
}

func (h *head) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	if keep := smtpwire.MaxBannerRecord - len(h.buf); keep > 0 {
		h.buf = append(h.buf, b[:min(n, keep)]...)
	}
	return n, err
}

// Bytes returns the bytes kept.
func (h *head) Bytes() []byte { return h.buf }
