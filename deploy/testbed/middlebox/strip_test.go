package middlebox

import (
	"bytes"
	"strings"
	"testing"
)

func TestStripReplies(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "starttls in the middle",
			in:   "250-mx.example Hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 X-OP25B-PROOF tok\r\n",
			want: "250-mx.example Hello\r\n250-PIPELINING\r\n250 X-OP25B-PROOF tok\r\n",
		},
		{
			name: "starttls last: the line before becomes final",
			in:   "250-mx.example Hello\r\n250-SIZE 1000\r\n250 STARTTLS\r\n",
			want: "250-mx.example Hello\r\n250 SIZE 1000\r\n",
		},
		{
			name: "starttls the only keyword",
			in:   "250-mx.example\r\n250 STARTTLS\r\n",
			want: "250 mx.example\r\n",
		},
		{
			name: "lower case keyword, LF line ends",
			in:   "250-mx.example\n250-starttls\n250 8BITMIME\n",
			want: "250-mx.example\r\n250 8BITMIME\r\n",
		},
		{
			name: "greeting line is never a keyword",
			in:   "250-STARTTLS greets you\r\n250 8BITMIME\r\n",
			want: "250-STARTTLS greets you\r\n250 8BITMIME\r\n",
		},
		{
			name: "no starttls: unchanged",
			in:   "250-mx.example\r\n250-SIZE\r\n250 8BITMIME\r\n",
			want: "250-mx.example\r\n250-SIZE\r\n250 8BITMIME\r\n",
		},
		{
			name: "other replies pass, several in a row",
			in:   "220 mx.example ESMTP\r\n250-mx.example\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n500 5.5.2 what\r\n221 bye\r\n",
			want: "220 mx.example ESMTP\r\n250-mx.example\r\n250 AUTH PLAIN\r\n500 5.5.2 what\r\n221 bye\r\n",
		},
		{
			name: "single-line 250 untouched",
			in:   "250 STARTTLS\r\n",
			want: "250 STARTTLS\r\n",
		},
		{
			name: "empty final text keeps the bare code",
			in:   "250-mx.example\r\n250-STARTTLS\r\n250\r\n",
			want: "250-mx.example\r\n250\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := stripReplies(&out, strings.NewReader(tt.in)); err != nil {
				t.Fatalf("stripReplies: %v", err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("stripReplies(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestStripRepliesMalformed(t *testing.T) {
	var out bytes.Buffer
	err := stripReplies(&out, strings.NewReader("250-ok\r\n\x16\x03\x01garbage\r\n"))
	if err == nil {
		t.Fatalf("stripReplies(garbage) = nil error, output %q; want an error", out.String())
	}
}

func TestHideSTARTTLS(t *testing.T) {
	in := "EHLO n00.op25b.invalid\r\nstarttls\nQUIT\r\n"
	want := "EHLO n00.op25b.invalid\r\nXXXXXXXX\r\nQUIT\r\n"
	var out bytes.Buffer
	if err := hideSTARTTLS(&out, strings.NewReader(in)); err != nil {
		t.Fatalf("hideSTARTTLS: %v", err)
	}
	if got := out.String(); got != want {
		t.Errorf("hideSTARTTLS(%q) = %q; want %q", in, got, want)
	}
}
