package middlebox

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/op25b/observatory/internal/smtpwire"
)

// Stripper is a transparent SMTP proxy that removes STARTTLS from EHLO
// replies, the downgrade that firewall "SMTP fixups" and some ISP boxes
// perform. Everything else of the dialog passes unchanged, so the reference
// MTA's signed statement still verifies and only the capabilities differ:
// the agent must call it TAMPERED (starttls_stripped).
type Stripper struct {
	Upstream UpstreamFunc
	Log      *slog.Logger
}

// Handle proxies one session to the client's original destination.
func (s *Stripper) Handle(ctx context.Context, c net.Conn) {
	log := s.Log.With("client", c.RemoteAddr().String())
	up, dst, err := dialUpstream(ctx, c, s.Upstream)
	if err != nil {
		log.Warn("strip: no upstream", "err", err)
		c.Close()
		return
	}
	log.Debug("strip: proxying", "upstream", dst.String())
	splice(log, c, up, hideSTARTTLS, stripReplies)
}

// hideSTARTTLS passes client commands upstream but turns STARTTLS into
// XXXXXXXX, as Cisco's SMTP fixup does: a client that tries STARTTLS
// although it was not offered gets the server's "unrecognized command"
// instead of a TLS session this proxy could no longer rewrite.
func hideSTARTTLS(dst io.Writer, src io.Reader) error {
	br := bufio.NewReader(src)
	for {
		line, err := smtpwire.ReadLine(br, smtpwire.MaxLineLen)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if verb, _ := smtpwire.Command(line); verb == "STARTTLS" {
			line = strings.Repeat("X", len(line))
		}
		if _, err := io.WriteString(dst, line+"\r\n"); err != nil {
			return err
		}
	}
}

// stripReplies copies server replies to the client, each rewritten by
// StripSTARTTLS. Replies are re-emitted whole with CRLF line ends.
func stripReplies(dst io.Writer, src io.Reader) error {
	br := bufio.NewReader(src)
	var out []byte
	for {
		rep, err := smtpwire.ReadReply(br)
		if errors.Is(err, io.EOF) && len(rep.Lines) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		rep, _ = StripSTARTTLS(rep)
		out = appendReply(out[:0], rep)
		if _, err := dst.Write(out); err != nil {
			return err
		}
	}
}

// StripSTARTTLS removes the STARTTLS keyword from a multi-line 250 reply (an
// EHLO reply) and reports whether it did. The first line is the greeting and
// never a keyword. Other replies are returned as they are.
func StripSTARTTLS(rep smtpwire.Reply) (smtpwire.Reply, bool) {
	if rep.Code != 250 || len(rep.Lines) < 2 {
		return rep, false
	}
	lines := []string{rep.Lines[0]}
	for _, l := range rep.Lines[1:] {
		if kw, _, _ := strings.Cut(l, " "); strings.EqualFold(kw, "STARTTLS") {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == len(rep.Lines) {
		return rep, false
	}
	return smtpwire.Reply{Code: rep.Code, Lines: lines}, true
}

// appendReply appends rep in wire form: "250-" on every line but the last,
// which alone carries "250 " (or the bare code when its text is empty).
// Formatting from the parsed lines, rather than deleting bytes, is what keeps
// a reply well formed when the removed line was its last one.
func appendReply(b []byte, rep smtpwire.Reply) []byte {
	code := strconv.Itoa(rep.Code)
	for i, l := range rep.Lines {
		b = append(b, code...)
		switch {
		case i < len(rep.Lines)-1:
			b = append(b, '-')
		case l != "":
			b = append(b, ' ')
		}
		b = append(b, l...)
		b = append(b, "\r\n"...)
	}
	return b
}
