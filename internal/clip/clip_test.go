package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	// 43 characters of 3 bytes: 129 bytes, one more than the 128 an agent's
	// label may have.
	label := strings.Repeat("観測", 21) + "所"
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{"日本", 5, "日"},
		{"日本", 6, "日本"},
		{"日本", 2, ""},
		{label, 128, strings.Repeat("観測", 21)},
		{"a\xffb", 10, "a\uFFFDb"},
		{"a\xe6\x97", 10, "a\uFFFD"}, // a character cut by someone else
		{"a\x00b", 10, "a\uFFFDb"},
		{"\xff\xfe\xfd", 2, ""}, // one replacement is 3 bytes
		{"ab\xff", 4, "ab"},
		{"é\u0301", 3, "é"}, // a combining mark is a character of its own
	} {
		if got := Text(tc.in, tc.n); got != tc.want {
			t.Errorf("Text(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// FuzzText: whatever comes in, what comes out is valid UTF-8 without NUL,
// within the bound, and a prefix of the input when the input was valid.
func FuzzText(f *testing.F) {
	for _, s := range []string{"", "abc", "日本語", "a\xffb", "\x00", "\xe6\x97\xa5\xe6"} {
		f.Add(s, 4)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 300
		got := Text(s, n)
		if !utf8.ValidString(got) || strings.IndexByte(got, 0) >= 0 || len(got) > max(n, 0) {
			t.Fatalf("Text(%q, %d) = %q: invalid, NUL or too long", s, n, got)
		}
		if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && !strings.HasPrefix(s, got) {
			t.Fatalf("Text(%q, %d) = %q: not a prefix of valid input", s, n, got)
		}
		if len(s) <= n && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && got != s {
			t.Fatalf("Text(%q, %d) = %q: changed valid input within the bound", s, n, got)
		}
	})
}
