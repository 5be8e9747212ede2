// Package clip bounds text that comes from the network or from another
// program before it is stored, shown or sent on: valid UTF-8, no NUL
// (PostgreSQL's text holds neither invalid UTF-8 nor NUL) and at most a
// number of bytes, cut between two characters, never inside one. It is the
// one place the agent and the collector cut text.
package clip

import (
	"strings"
	"unicode/utf8"
)

// Text returns s made valid UTF-8 (every run of invalid bytes, and every
// NUL, becomes U+FFFD) and cut to at most n bytes at a character
// boundary.
func Text(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
