package middlebox

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/op25b/observatory/internal/smtpwire"
)

// maxRelayCommands ends a session that keeps talking; a probe needs three.
const maxRelayCommands = 50

// Relay is an ISP's own SMTP relay (smarthost) as an OP25B customer meets it:
// a real SMTP server with its own banner and capabilities and no proof line.
// It is what the OP25B exception points to and what a transparent redirect
// of port 25 lands on, so an agent must call it INTERCEPTED. It takes no
// mail: the probe never sends any, and a testbed has nowhere to deliver it.
type Relay struct {
	Hostname string // in the banner and the EHLO greeting
	Log      *slog.Logger
}

// Handle runs one SMTP session.
func (r *Relay) Handle(_ context.Context, c net.Conn) {
	defer c.Close()
	log := r.Log.With("client", c.RemoteAddr().String())
	if err := r.session(c); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Debug("relay session ended", "err", err)
	}
}

func (r *Relay) session(c net.Conn) error {
	br := bufio.NewReader(c)
	reply := func(code int, lines ...string) error {
		_, err := c.Write(appendReply(nil, smtpwire.Reply{Code: code, Lines: lines}))
		return err
	}
	if err := reply(220, r.Hostname+" ESMTP"); err != nil {
		return err
	}
	for range maxRelayCommands {
		line, err := smtpwire.ReadLine(br, smtpwire.MaxCommandLen)
		if errors.Is(err, smtpwire.ErrLineTooLong) {
			return reply(500, "5.5.2 line too long")
		}
		if err != nil {
			return err
		}
		verb, _ := smtpwire.Command(line)
		switch verb {
		case "EHLO":
			err = reply(250, r.Hostname+" Hello", "PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES")
		case "HELO":
			err = reply(250, r.Hostname)
		case "NOOP", "RSET":
			err = reply(250, "2.0.0 OK")
		case "QUIT":
			return reply(221, "2.0.0 "+r.Hostname+" closing connection")
		case "STARTTLS":
			err = reply(454, "4.7.0 TLS not available")
		case "MAIL", "RCPT", "DATA":
			err = reply(554, "5.7.1 testbed relay accepts no mail")
		default:
			err = reply(500, "5.5.2 command not recognized")
		}
		if err != nil {
			return err
		}
	}
	return reply(421, "4.7.0 too many commands")
}
