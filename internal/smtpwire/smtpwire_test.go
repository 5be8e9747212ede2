package smtpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in    string
		code  int
		lines []string
		err   error
	}{
		{"220 mx.example ESMTP\r\n", 220, []string{"mx.example ESMTP"}, nil},
		{"250-a\r\n250-b\r\n250 c\r\n", 250, []string{"a", "b", "c"}, nil},
		{"250\n", 250, []string{""}, nil},
		{"250-a\r\n354 b\r\n", 0, nil, ErrCodeChanged},
		{"hello\r\n", 0, nil, ErrMalformed},
		{"199 too low\r\n", 0, nil, ErrMalformed},
		{"250*x\r\n", 0, nil, ErrMalformed},
		{"250 " + strings.Repeat("x", MaxLineLen+10) + "\r\n", 0, nil, ErrLineTooLong},
		{strings.Repeat("250-x\r\n", MaxReplyLines+1), 0, nil, ErrTooManyLines},
		{"250-a\r\n", 0, nil, io.EOF},
	} {
		got, err := ReadReply(bufio.NewReaderSize(strings.NewReader(c.in), 64))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("ReadReply(%.40q) error = %v; want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.Code != c.code || !slices.Equal(got.Lines, c.lines) {
			t.Errorf("ReadReply(%.40q) = %d %q, %v; want %d %q", c.in, got.Code, got.Lines, err, c.code, c.lines)
		}
	}
}

func TestReadLineBounded(t *testing.T) {
	// A line far longer than the limit is refused after reading about the
	// limit, not after buffering all of it.
	r := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte("a"), 10<<20))}
	if _, err := ReadLine(bufio.NewReaderSize(r, 4096), MaxLineLen); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("ReadLine of a 10 MB line = %v; want ErrLineTooLong", err)
	}
	if r.n > MaxLineLen+8192 {
		t.Errorf("ReadLine consumed %d bytes of a 10 MB line; want about %d", r.n, MaxLineLen)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestCapabilities(t *testing.T) {
	r := Reply{Code: 250, Lines: []string{"mx greets you", "starttls", "AUTH PLAIN LOGIN", "X-OP25B-PROOF tok.sig", "8BITMIME"}}
	caps, tok := Capabilities(r)
	if want := []string{"STARTTLS", "AUTH", "8BITMIME"}; !slices.Equal(caps, want) || tok != "tok.sig" {
		t.Errorf("Capabilities = %q, %q; want %q, %q", caps, tok, want, "tok.sig")
	}
	if caps, tok := Capabilities(Reply{Code: 250}); caps != nil || tok != "" {
		t.Errorf("Capabilities(empty) = %q, %q", caps, tok)
	}
}

func TestNonceInEHLO(t *testing.T) {
	n := []byte("0123456789abcdef")
	d := EHLODomain(n)
	if got, ok := NonceFromEHLO(strings.ToUpper(d)); !ok || !bytes.Equal(got, n) {
		t.Errorf("NonceFromEHLO(%q) = %x, %v; want %x", d, got, ok, n)
	}
	for _, arg := range []string{"mail.example.org", "[192.0.2.1]", "n1234" + NonceSuffix, "x" + d[1:], ""} {
		if _, ok := NonceFromEHLO(arg); ok {
			t.Errorf("NonceFromEHLO(%q) found a nonce", arg)
		}
	}
}

func TestCommand(t *testing.T) {
	for in, want := range map[string][2]string{"ehlo x.example": {"EHLO", "x.example"}, "QUIT": {"QUIT", ""}, "mail FROM:<a@b>  ": {"MAIL", "FROM:<a@b>"}} {
		if v, a := Command(in); v != want[0] || a != want[1] {
			t.Errorf("Command(%q) = %q, %q; want %q, %q", in, v, a, want[0], want[1])
		}
	}
}

func TestReadLineLimitExact(t *testing.T) {
	for _, end := range []string{"\r\n", "\n"} {
		for n, want := range map[int]error{MaxLineLen: nil, MaxLineLen + 1: ErrLineTooLong} {
			_, err := ReadLine(bufio.NewReader(strings.NewReader(strings.Repeat("a", n)+end)), MaxLineLen)
			if !errors.Is(err, want) && err != want {
				t.Errorf("ReadLine(%d bytes + %q) = %v; want %v", n, end, err, want)
			}
		}
	}
}

// TestReadCommandSkipsLongLine: an over-long command is refused and the
// session goes on with the next one, for any buffer size and terminator.
func TestReadCommandSkipsLongLine(t *testing.T) {
	for _, size := range []int{16, 1024, 4096} {
		for _, end := range []string{"\r\n", "\n"} {
			for _, n := range []int{MaxCommandLen + 1, 600, 2000, MaxCommandSkip - 100} {
				in := strings.Repeat("a", MaxCommandLen) + end + strings.Repeat("b", n) + end + "NOOP" + end
				r := bufio.NewReaderSize(strings.NewReader(in), size)
				var got []string
				for {
					line, err := ReadCommand(r)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						line = err.Error()
					}
					got = append(got, line)
				}
				want := []string{strings.Repeat("a", MaxCommandLen), ErrLineTooLong.Error(), "NOOP"}
				if !slices.Equal(got, want) {
					t.Errorf("ReadCommand of a %d-byte line + %q, buffer %d: %.80q; want %.80q", n, end, size, got, want)
				}
			}
		}
	}
}

func TestReadCommandEndless(t *testing.T) {
	r := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte("a"), 10<<20))}
	if _, err := ReadCommand(bufio.NewReaderSize(r, 1024)); !errors.Is(err, ErrLineEndless) {
		t.Fatalf("ReadCommand of a 10 MB line = %v; want ErrLineEndless", err)
	}
	if r.n > MaxCommandSkip+1024 {
		t.Errorf("ReadCommand consumed %d bytes of a 10 MB line; want about %d", r.n, MaxCommandSkip)
	}
}
