package deploytest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// guides are the operator, volunteer, researcher and ISP guides: their
// commands, variables and links are checked.
var guides = []string{"docs/operator.md", "docs/volunteer.md", "docs/researcher.md", "docs/isp.md"}

// commandDocs are every document whose commands are checked: the guides,
// the README and the dataset reference. (docs/pipeline.md is left out for
// now: its diagram is an unlabelled code block that reads as commands.)
var commandDocs = append(slices.Clone(guides), "README.md", "docs/dataset.md")

// testVariables are OP25B_ variables of the tests and the Makefile, not of
// the programs.
var testVariables = map[string]bool{"OP25B_REQUIRE_ALL": true, "OP25B_ARTIFACTS": true, "OP25B_TEST_DATABASE_URL": true}

type codeBlock struct {
	info string
	line int // of the first line inside the fence
	text string
}

// codeBlocks returns the fenced code blocks of a Markdown text.
func codeBlocks(text string) []codeBlock {
	var blocks []codeBlock
	var cur *codeBlock
	var body strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur == nil {
			if info, ok := strings.CutPrefix(trimmed, "```"); ok {
				cur = &codeBlock{info: strings.TrimSpace(info), line: n + 1}
				body.Reset()
			}
			continue
		}
		if trimmed == "```" {
			cur.text = body.String()
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		// Indented blocks (in lists) keep their relative indentation.
		body.WriteString(line + "\n")
	}
	return blocks
}

// shellInfo are the info strings of blocks that hold commands; others
// (text for output, nginx, sql, json) are not run.
var shellInfo = map[string]bool{"": true, "sh": true, "bash": true, "shell": true, "console": true}

func readGuide(t *testing.T, g string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, g))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocCommands parses every command line of the documents' code blocks
// that runs one of our programs (directly, through docker run, docker
// compose run or exec, sh -c, or OpenWrt's procd) and checks it against the
// program's real flags and subcommands, and the OP25B_ variables it is
// given against the flags they set.
func TestDocCommands(t *testing.T) {
	_, im := compose(t)
	pr := progs(t)
	seen := map[string]int{}
	for _, g := range commandDocs {
		calls, problems := docCommands(im, pr, readGuide(t, g))
		for _, p := range problems {
			t.Errorf("%s:%s", g, p)
		}
		for _, c := range calls {
			seen[c.Program]++
			t.Logf("%s:%d: %s", g, c.Line, c)
		}
		if len(calls) == 0 && slices.Contains(guides, g) {
			t.Errorf("%s: no command of ours found: is the parser broken?", g)
		}
		t.Logf("%s: %d commands checked", g, len(calls))
	}
	for _, p := range []string{"op25b-agent", "op25b-refmta", "op25b-collector", "op25b"} {
		if seen[p] == 0 {
			t.Errorf("no guide shows %s", p)
		}
	}
}

// docCommands finds the calls of our programs in the shell blocks of a
// Markdown text, with their lines in the text, and checks each: it
// returns the calls and the problems, each as "LINE: what".
func docCommands(im *Images, pr *Programs, text string) (calls []Call, problems []string) {
	for _, b := range codeBlocks(text) {
		if !shellInfo[b.info] {
			continue
		}
		cmds, err := ShellCommands(b.text)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%d: %v", b.line, err))
			continue
		}
		found, err := im.Calls(cmds)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%d: %v", b.line, err))
			continue
		}
		for _, c := range found {
			c.Line += b.line - 1
			if err := pr.Check(c); err != nil {
				problems = append(problems, fmt.Sprintf("%d: %s: %v", c.Line, c, err))
			}
			calls = append(calls, c)
		}
	}
	return calls, problems
}

// TestDocCommandsCatch shows TestDocCommands a guide with a mistake in
// each command: each is reported, at its line.
func TestDocCommandsCatch(t *testing.T) {
	_, im := compose(t)
	pr := progs(t)
	guide := "# A guide\n\n```sh\n" + `op25b-agent check --refmta 192.0.2.25 --quiet
op25b-agent check --no-such-flag
sudo OP25B_NO_SUCH_VARIABLE=1 op25b-agent run --collector c:8443
docker compose run --rm agent-open check --bogus
docker compose exec collector op25b-collector token frobnicate
token=$(op25b-collector token create --notes x)
for a in AS64500 AS64501; do op25b asn "$a" --window 7d --frmat csv; done
sh -c 'op25b-refmta identity --hostnme mta'
` + "```\n\n```text\nop25b-agent check --not-a-command-in-a-text-block\n```\n\n```bash\nop25b-agent check \"unterminated\n```\n"
	calls, problems := docCommands(im, pr, guide)
	if len(calls) != 8 {
		t.Errorf("found %d calls; want the 8 of the sh block:\n%v", len(calls), calls)
	}
	want := []string{
		"5: op25b-agent check --no-such-flag: op25b-agent check: flag provided but not defined: -no-such-flag",
		"6: op25b-agent run --collector c:8443: op25b-agent run has no flag that OP25B_NO_SUCH_VARIABLE sets",
		"7: op25b-agent check --bogus (via docker compose run agent-open): op25b-agent check: flag provided but not defined: -bogus",
		`8: op25b-collector token frobnicate (via docker compose exec collector): op25b-collector: no subcommand "token frobnicate"`,
		"9: op25b-collector token create --notes x: op25b-collector token create: flag provided but not defined: -notes",
		"10: op25b asn $a --window 7d --frmat csv: op25b asn: flag provided but not defined: -frmat",
		"11: op25b-refmta identity --hostnme mta: op25b-refmta identity: flag provided but not defined: -hostnme",
		"19: 1:19: reached EOF without closing quote `\"`",
	}
	if !slices.Equal(problems, want) {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

var envName = regexp.MustCompile(`\bOP25B_[A-Z0-9_]*[A-Z0-9]\b`)

// TestDocVariables checks that every OP25B_ variable the documents name,
// in prose or code, sets a flag of one of our programs, or is one the
// Grafana data sources or the tests read.
func TestDocVariables(t *testing.T) {
	pr := progs(t)
	for _, g := range commandDocs {
		for _, name := range envName.FindAllString(readGuide(t, g), -1) {
			if grafanaEnv[name] || testVariables[name] {
				continue
			}
			ok, err := pr.EnvFlag(name)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("%s: %s sets no flag of any of our programs", g, name)
			}
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinks checks that the guides' relative links name files that
// exist and, for Markdown files, headings that exist.
func TestDocLinks(t *testing.T) {
	for _, g := range guides {
		text := readGuide(t, g)
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(link, "#")
			target := filepath.Join(root, filepath.Dir(g), file)
			if file == "" {
				target = filepath.Join(root, g)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %s: %v", g, link, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(target, ".md") {
				b, err := os.ReadFile(target)
				if err != nil {
					t.Fatal(err)
				}
				if !anchors(string(b))[anchor] {
					t.Errorf("%s: link %s: %s has no heading with anchor #%s", g, link, rel(target), anchor)
				}
			}
		}
	}
}

// anchors returns the anchors GitHub gives a Markdown file's headings.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		for i := 0; ; i++ {
			s := slug
			if i > 0 {
				s = slug + "-" + string(rune('0'+i))
			}
			if !out[s] {
				out[s] = true
				break
			}
		}
	}
	return out
}
