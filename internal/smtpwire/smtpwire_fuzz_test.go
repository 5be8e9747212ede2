package smtpwire

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// FuzzReadReply feeds arbitrary bytes to ReadReply, as a hostile server
// would. It must never panic, must accept only well-formed replies, and
// must stop reading within its bounds. Seeds live in
// testdata/fuzz/FuzzReadReply and run under plain go test.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte("220 mx.example ESMTP\r\n"))
	f.Add([]byte("250-mx.example greets you\r\n250-STARTTLS\r\n250 X-OP25B-PROOF a.b\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		r := bufio.NewReader(src)
		rep, err := ReadReply(r)
		// What ReadReply took from the stream, read-ahead included: at
		// most every line at its limit, plus one over-long line and one
		// buffer of read-ahead.
		consumed := len(data) - src.Len()
		if limit := MaxReplyLines*(MaxLineLen+2) + MaxLineLen + 2 + r.Size(); consumed > limit {
			t.Fatalf("ReadReply consumed %d bytes; limit %d", consumed, limit)
		}
		if err != nil {
			return
		}
		if rep.Code < 200 || rep.Code > 599 {
			t.Fatalf("ReadReply(%q) code = %d; want 200..599", data, rep.Code)
		}
		if n := len(rep.Lines); n < 1 || n > MaxReplyLines {
			t.Fatalf("ReadReply(%q) returned %d lines; want 1..%d", data, n, MaxReplyLines)
		}
		for _, l := range rep.Lines {
			// "250 " + text, terminator excluded.
			if n := 4 + len(l); n > MaxLineLen {
				t.Fatalf("ReadReply(%q) returned a %d-byte line; limit %d", data, n, MaxLineLen)
			}
		}
		_ = rep.Text()
		caps, _ := Capabilities(rep)
		if len(caps) >= len(rep.Lines) {
			t.Fatalf("Capabilities(%q) = %d keywords from %d lines; the greeting carries none", data, len(caps), len(rep.Lines))
		}
		// What was accepted reads back the same when written out again.
		var b bytes.Buffer
		for i, l := range rep.Lines {
			sep := "-"
			if i == len(rep.Lines)-1 {
				sep = " "
			}
			fmt.Fprintf(&b, "%03d%s%s\r\n", rep.Code, sep, l)
		}
		again, err := ReadReply(bufio.NewReader(&b))
		if err != nil || again.Code != rep.Code || !slices.Equal(again.Lines, rep.Lines) {
			t.Fatalf("ReadReply(%q) = %+v, which reads back as %+v, %v", data, rep, again, err)
		}
	})
}
