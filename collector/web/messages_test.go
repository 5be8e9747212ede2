package web

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/dataset"
)

func TestMessagesSameKeys(t *testing.T) {
	en := messages["en"]
	for lang, m := range messages {
		for key := range en {
			if _, ok := m[key]; !ok {
				t.Errorf("%s lacks %q", lang, key)
			}
		}
		for key := range m {
			if _, ok := en[key]; !ok {
				t.Errorf("%s has %q, which en lacks", lang, key)
			}
		}
	}
}

var verbRE = regexp.MustCompile(`%(\[\d+\])?[a-z]`)

// TestMessagesSameVerbs checks that every language's version of a message
// takes the same arguments.
func TestMessagesSameVerbs(t *testing.T) {
	verbs := func(s string) []string {
		v := verbRE.FindAllString(s, -1)
		slices.Sort(v)
		return slices.Compact(v)
	}
	for key, want := range messages["en"] {
		for lang, m := range messages {
			if got := verbs(m[key]); !slices.Equal(got, verbs(want)) {
				t.Errorf("%s %q takes %v; en takes %v", lang, key, got, verbs(want))
			}
			if strings.Contains(m[key], "{shown}") != strings.Contains(want, "{shown}") ||
				strings.Contains(m[key], "{total}") != strings.Contains(want, "{total}") {
				t.Errorf("%s %q: placeholders differ from en", lang, key)
			}
		}
	}
}

var goKeyRE = regexp.MustCompile(`(?:\btf?|\btranslatorf?\([^)]*\))\("([a-z0-9_.]+)"`)

var templateKeyRE = regexp.MustCompile(`\{\{-?\s*(?:t|tf)\s+"([^"]+)"`)

// TestTemplatesUseKnownKeys checks every literal key in the templates, and
// the keys the pages build from data: class, verdict and gap names.
func TestTemplatesUseKnownKeys(t *testing.T) {
	used := map[string]bool{}
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := templateFS.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range templateKeyRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(used) < 50 {
		t.Fatalf("found only %d keys in the templates; is the pattern stale?", len(used))
	}
	for _, name := range dataset.ClassNames() {
		used["class."+name] = true
	}
	for _, v := range allVerdicts {
		used["verdict."+dataset.VerdictName(v)] = true
		used["verdict."+dataset.VerdictName(v)+".short"] = true
	}
	for _, kind := range knownGaps {
		used["gap."+kind] = true
	}
	// Keys the Go code looks up with its translator t.
	goFiles, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range goFiles {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goKeyRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	for key := range used {
		for lang, m := range messages {
			if _, ok := m[key]; !ok {
				t.Errorf("%s lacks %q, which the pages use", lang, key)
			}
		}
	}
	for key := range messages["en"] {
		if !used[key] {
			t.Errorf("message %q is never used", key)
		}
	}
}
