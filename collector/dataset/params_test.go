package dataset_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/op25b/observatory/collector/dataset"
)

// TestParseWindowBounds: a window too long for any server is a clear
// bound error (issue 10: "9999999d" overflowed into "the end must come
// after the start").
func TestParseWindowBounds(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ in, says string }{
		{"9999999d", "at most 36600 days"},
		{"99999999999999999999999d", "at most 36600 days"},
		{"36601d", "at most 36600 days"},
		{"0d", "want a number of days"},
		{"-3d", "want a number of days"},
	} {
		_, err := dataset.ParseWindow(tc.in, now)
		if !errors.Is(err, dataset.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParseWindow(%q) = %v; want ErrInvalid saying %q", tc.in, err, tc.says)
		}
	}
	w, err := dataset.ParseWindow("36600d", now)
	if err != nil || !w.GetStart().IsValid() || !w.GetEnd().AsTime().After(w.GetStart().AsTime()) {
		t.Errorf("ParseWindow(36600d) = %v, %v; want a valid range", w, err)
	}
}

// TestQuoteClips: errors repeat at most 64 bytes of a parameter, cut on
// a character boundary (issue 10: a 1 MB parameter came back whole).
func TestQuoteClips(t *testing.T) {
	if got := dataset.Quote("ipv5"); got != `"ipv5"` {
		t.Errorf("Quote(ipv5) = %s", got)
	}
	huge := strings.Repeat("日本", 1<<19/3) // a megabyte of three-byte characters
	got := dataset.Quote(huge)
	if len(got) > 100 || !strings.Contains(got, "bytes)") || !utf8.ValidString(got) || strings.Contains(got, `\x`) {
		t.Errorf("Quote(a megabyte) = %s; want at most 100 bytes of whole characters and the length", got)
	}
	_, err := dataset.ParseWindow(strings.Repeat("x", 1<<20), time.Now())
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("ParseWindow(a megabyte): an error of %d bytes; want under 200", len(err.Error()))
	}
}
