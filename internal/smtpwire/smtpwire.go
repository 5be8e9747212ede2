// Package smtpwire holds the SMTP wire constants and the bounded reply and
// command readers shared by the probe (agent/probe) and the reference MTA
// (refmta). Everything here reads from untrusted peers, so every read is
// bounded in bytes; deadlines are the caller's.
package smtpwire

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ProofKeyword is the EHLO keyword whose parameter is the signed statement
// (see internal/proof). It is not a capability and is never signed as one.
const ProofKeyword = "X-OP25B-PROOF"

// BannerMark is in every greeting of our reference MTA ("220 <host> ESMTP
// OP25B Observatory reference MTA; ..."): a 220 greeting without it is
// positive evidence that something else answered.
const BannerMark = "OP25B Observatory"

// NonceSuffix ends the EHLO domain in which an agent sends its nonce:
// "n<32 hex>.op25b.invalid" (the .invalid TLD never resolves, RFC 6761).
const NonceSuffix = ".op25b.invalid"

// Limits for replies read by the probe. RFC 5321 allows 512-byte reply
// lines; we accept more to keep evidence, and never more than this.
const (
	MaxLineLen      = 2048
	MaxReplyLines   = 64
	MaxCommandLen   = 512
	MaxBannerRecord = 512 // bytes of a foreign banner kept as evidence
	// MaxCommandSkip bounds what ReadCommand reads of an over-long
	// command line to find its end.
	MaxCommandSkip = 64 << 10
)

// Errors of the readers.
var (
	ErrLineTooLong  = errors.New("line too long")
	ErrLineEndless  = errors.New("line too long to skip")
	ErrTooManyLines = errors.New("too many reply lines")
	ErrMalformed    = errors.New("malformed reply")
	ErrCodeChanged  = errors.New("reply code changed inside a multi-line reply")
)

// Reply is one SMTP reply: its code and the text of each line.
type Reply struct {
	Code  int
	Lines []string
}

// Text returns the reply as received, lines joined with "\n".
func (r Reply) Text() string {
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%03d %s", r.Code, l)
	}
	return b.String()
}

// ParseReplyLine splits one reply line (without CRLF) into its code, whether
// more lines follow ("250-") and its text.
func ParseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: %q", ErrMalformed, clip(line))
	}
	for i := 0; i < 3; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false, "", fmt.Errorf("%w: no reply code in %q", ErrMalformed, clip(line))
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("%w: reply code %d out of range", ErrMalformed, code)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], nil
	case '-':
		return code, true, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("%w: bad separator in %q", ErrMalformed, clip(line))
}

// ReadLine reads one CRLF- or LF-terminated line of at most max bytes and
// returns it without the terminator. A longer line fails with
// ErrLineTooLong after at most max+1 bytes are consumed.
func ReadLine(r *bufio.Reader, max int) (string, error) {
	return readLine(r, max, 0)
}

// ReadCommand reads one client command line, at most MaxCommandLen bytes
// (RFC 5321, section 4.5.3.1.4). A longer line is read to its end and fails
// with ErrLineTooLong, so that the next read starts at the next command; one
// longer than MaxCommandSkip fails with ErrLineEndless after consuming about
// that much, in the middle of the line.
func ReadCommand(r *bufio.Reader) (string, error) {
	return readLine(r, MaxCommandLen, MaxCommandSkip)
}

// readLine reads a line of at most max bytes; a longer one is consumed to
// its end if that comes within skip bytes.
func readLine(r *bufio.Reader, max, skip int) (string, error) {
	var b []byte
	n, long := 0, false
	for {
		frag, err := r.ReadSlice('\n')
		n += len(frag)
		switch {
		case n > max+2 && n > skip: // +2 for CRLF
			if skip > 0 {
				return "", ErrLineEndless
			}
			return "", ErrLineTooLong
		case n > max+2:
			long, b = true, nil
		case !long:
			b = append(b, frag...)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	if long {
		return "", ErrLineTooLong
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > max { // a bare-LF line may have slipped one byte past the check above
		return "", ErrLineTooLong
	}
	return string(b), nil
}

// ReadReply reads one complete reply, bounded by MaxLineLen and
// MaxReplyLines.
func ReadReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	for {
		line, err := ReadLine(r, MaxLineLen)
		if err != nil {
			return rep, err
		}
		code, more, text, err := ParseReplyLine(line)
		if err != nil {
			return rep, err
		}
		if len(rep.Lines) > 0 && code != rep.Code {
			return rep, ErrCodeChanged
		}
		rep.Code = code
		rep.Lines = append(rep.Lines, text)
		if !more {
			return rep, nil
		}
		if len(rep.Lines) >= MaxReplyLines {
			return rep, ErrTooManyLines
		}
	}
}

// Capabilities returns the EHLO keywords of a 250 EHLO reply, upper case,
// in order, and the proof token if the reply carried one. The first line is
// the greeting and carries no keyword.
func Capabilities(r Reply) (caps []string, proofToken string) {
	for _, l := range r.Lines[min(1, len(r.Lines)):] {
		kw, param, _ := strings.Cut(l, " ")
		kw = strings.ToUpper(kw)
		if kw == ProofKeyword {
			proofToken = strings.TrimSpace(param)
			continue
		}
		if kw != "" {
			caps = append(caps, kw)
		}
	}
	return caps, proofToken
}

// EHLODomain is the EHLO argument that carries nonce.
func EHLODomain(nonce []byte) string {
	return "n" + hex.EncodeToString(nonce) + NonceSuffix
}

// NonceFromEHLO returns the nonce carried by an EHLO argument, or false if
// the argument carries none (any other client).
func NonceFromEHLO(arg string) ([]byte, bool) {
	arg = strings.ToLower(strings.TrimSpace(arg))
	h, ok := strings.CutSuffix(arg, NonceSuffix)
	if !ok || !strings.HasPrefix(h, "n") {
		return nil, false
	}
	n, err := hex.DecodeString(h[1:])
	if err != nil || len(n) != 16 {
		return nil, false
	}
	return n, true
}

// Command splits a client command line into its upper-case verb and its
// argument.
func Command(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), strings.TrimSpace(arg)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
