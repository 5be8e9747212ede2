package advice

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/op25b/observatory/internal/verdict"
)

func TestSituations(t *testing.T) {
	const (
		open = verdict.Open
		tmo  = verdict.BlockedTimeout
		rst  = verdict.BlockedReset
		icp  = verdict.Intercepted
		tmp  = verdict.Tampered
		inc  = verdict.Inconclusive
	)
	r := func(port uint16, v verdict.Verdict) Result { return Result{port, v} }
	for _, tc := range []struct {
		name    string
		results []Result
		want    []Situation
	}{
		{"OP25B", []Result{r(25, tmo), r(587, open), r(465, open)}, []Situation{OP25B}},
		{"OP25B, 465 only", []Result{r(25, rst), r(587, tmo), r(465, open)}, []Situation{OP25B}},
		{"all blocked", []Result{r(25, tmo), r(587, tmo), r(465, rst)}, []Situation{AllBlocked}},
		{"25 blocked, submission unknown", []Result{r(25, tmo), r(587, inc), r(465, inc)}, []Situation{Blocked25}},
		{"intercepted", []Result{r(25, icp), r(587, open), r(465, open)}, []Situation{Intercepted25}},
		{"open", []Result{r(25, open), r(587, open), r(465, open)}, []Situation{Open25}},
		{"open on one family, blocked on the other", []Result{r(25, open), r(25, tmo), r(587, open)}, []Situation{Open25}},
		{"inconclusive", []Result{r(25, inc), r(587, open), r(465, open)}, []Situation{Inconclusive}},
		{"TLS replaced on submission, 25 blocked", []Result{r(25, tmo), r(587, tmp), r(465, open)}, []Situation{TLSReplaced, OP25B}},
		{"STARTTLS stripped on 25", []Result{r(25, tmp), r(587, open)}, []Situation{TLSReplaced}},
		{"nothing", nil, nil},
		{"a test server on other ports", []Result{r(2525, open), r(2587, tmo)}, nil},
	} {
		if got := Situations(tc.results); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestEveryTextInEveryLanguage: each situation has a headline and a body
// in each language, and Japanese texts are Japanese.
func TestEveryTextInEveryLanguage(t *testing.T) {
	for _, lang := range Languages {
		for _, s := range []Situation{TLSReplaced, Intercepted25, OP25B, AllBlocked, Blocked25, Open25, Inconclusive} {
			head, body := Text(s, lang)
			if head == "" || len(body) < 40 {
				t.Errorf("%s %s: headline %q, body %q", lang, s, head, body)
			}
			if lang == "ja" && !strings.ContainsAny(head+body, "ぁあいうえおかがきくけこさしすせそただちつてとなにぬねのはばひふへほまみむめもやゆよらりるれろわをん") {
				t.Errorf("ja %s has no Japanese: %q", s, head)
			}
		}
		if heading[lang] == "" {
			t.Errorf("%s: no heading", lang)
		}
	}
}

func TestLang(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		flag string
		env  map[string]string
		want string
	}{
		{"", nil, "en"},
		{"", map[string]string{"LANG": "ja_JP.UTF-8"}, "ja"},
		{"", map[string]string{"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}, "en"},
		{"", map[string]string{"LC_MESSAGES": "ja_JP.eucJP", "LANG": "en_US.UTF-8"}, "ja"},
		{"ja", map[string]string{"LANG": "en_US.UTF-8"}, "ja"},
		{"en", map[string]string{"LANG": "ja_JP.UTF-8"}, "en"},
	} {
		if got, err := Lang(tc.flag, env(tc.env)); err != nil || got != tc.want {
			t.Errorf("Lang(%q, %v) = %q, %v; want %q", tc.flag, tc.env, got, err, tc.want)
		}
	}
	if _, err := Lang("fr", env(nil)); err == nil || !strings.Contains(err.Error(), "en or ja") {
		t.Errorf("Lang(fr): %v; want an error naming the languages", err)
	}
}

// TestWrite: the advice is wrapped to the terminal, Japanese by columns,
// without cutting a character, and says nothing for a test server.
func TestWrite(t *testing.T) {
	for _, lang := range Languages {
		var b bytes.Buffer
		if err := Write(&b, []Result{{25, verdict.BlockedTimeout}, {587, verdict.Open}}, lang); err != nil {
			t.Fatal(err)
		}
		head, _ := Text(OP25B, lang)
		if !strings.Contains(b.String(), heading[lang]) || !strings.Contains(b.String(), head) {
			t.Errorf("%s: %q lacks the heading or the OP25B headline", lang, b.String())
		}
		for _, line := range strings.Split(b.String(), "\n") {
			if !utf8.ValidString(line) {
				t.Errorf("%s: line cut inside a character: %q", lang, line)
			}
			cols := 0
			for _, r := range line {
				cols++
				if r >= 0x1100 {
					cols++
				}
			}
			if cols > 4+76+2 && !strings.Contains(line, head) {
				t.Errorf("%s: line of %d columns: %q", lang, cols, line)
			}
		}
	}
	var b bytes.Buffer
	if err := Write(&b, []Result{{2525, verdict.Open}}, "en"); err != nil || b.Len() != 0 {
		t.Errorf("Write for a test server on port 2525: %q, %v; want nothing", b.String(), err)
	}
}
