package deploytest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Dockerfile is a parsed Dockerfile: its stages, in order.
type Dockerfile struct {
	Path   string
	Stages []*Stage
}

// Stage is one FROM ... [AS name] of a Dockerfile.
type Stage struct {
	Name, From  string
	Workdir     string
	Copies      []Copy
	Runs        []string
	Entrypoint  []string
	Cmd         []string
	Healthcheck []string
	User        string
}

// Copy is a COPY or ADD instruction.
type Copy struct {
	Line    int
	From    string // --from: a stage or image; "" for the build context
	Sources []string
	Dest    string
}

// Stage returns the stage named name, or nil.
func (d *Dockerfile) Stage(name string) *Stage {
	for _, s := range d.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ParseDockerfile reads the instructions the checks need from a Dockerfile.
// Build arguments in paths are not expanded: a COPY source with a $ is an
// error, since it could not be checked.
func ParseDockerfile(file string) (*Dockerfile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &Dockerfile{Path: file}
	var cur *Stage
	sc := bufio.NewScanner(f)
	lineNo, start := 0, 0
	var logical strings.Builder
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && logical.Len() == 0) {
			continue
		}
		if logical.Len() == 0 {
			start = lineNo
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			logical.WriteString(body + " ")
			continue
		}
		logical.WriteString(line)
		text := strings.TrimSpace(logical.String())
		logical.Reset()
		instr, rest, _ := strings.Cut(text, " ")
		rest = strings.TrimSpace(rest)
		where := fmt.Sprintf("%s:%d", file, start)
		switch strings.ToUpper(instr) {
		case "FROM":
			words := dropFlags(strings.Fields(rest))
			if len(words) == 0 {
				return nil, fmt.Errorf("%s: FROM without an image", where)
			}
			cur = &Stage{From: words[0], Workdir: "/"}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				cur.Name = words[2]
			}
			d.Stages = append(d.Stages, cur)
		case "COPY", "ADD":
			if cur == nil {
				return nil, fmt.Errorf("%s: %s before FROM", where, instr)
			}
			c := Copy{Line: start}
			words, err := splitArgs(rest)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				if v, ok := strings.CutPrefix(words[0], "--from="); ok {
					c.From = v
				}
				words = words[1:]
			}
			if len(words) < 2 {
				return nil, fmt.Errorf("%s: %s needs a source and a destination", where, instr)
			}
			c.Sources, c.Dest = words[:len(words)-1], words[len(words)-1]
			if c.From == "" {
				for _, s := range c.Sources {
					if strings.Contains(s, "$") {
						return nil, fmt.Errorf("%s: source %q has a variable: it cannot be checked", where, s)
					}
				}
			}
			cur.Copies = append(cur.Copies, c)
		case "RUN":
			if cur == nil {
				return nil, fmt.Errorf("%s: RUN before FROM", where)
			}
			cur.Runs = append(cur.Runs, rest)
		case "WORKDIR":
			if cur != nil {
				cur.Workdir = path.Join(cur.Workdir, rest)
			}
		case "USER":
			if cur != nil {
				cur.User = rest
			}
		case "ENTRYPOINT", "CMD":
			if cur == nil {
				return nil, fmt.Errorf("%s: %s before FROM", where, instr)
			}
			argv, err := execForm(rest)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %v", where, instr, err)
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				cur.Entrypoint = argv
			} else {
				cur.Cmd = argv
			}
		case "HEALTHCHECK":
			if cur == nil {
				return nil, fmt.Errorf("%s: HEALTHCHECK before FROM", where)
			}
			words := strings.Fields(rest)
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				words = words[1:]
			}
			if len(words) == 0 || !strings.EqualFold(words[0], "CMD") {
				return nil, fmt.Errorf("%s: HEALTHCHECK without CMD", where)
			}
			argv, err := execForm(strings.TrimSpace(rest[strings.Index(strings.ToUpper(rest), "CMD")+3:]))
			if err != nil {
				return nil, fmt.Errorf("%s: HEALTHCHECK: %v", where, err)
			}
			cur.Healthcheck = argv
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", file)
	}
	return d, nil
}

// dropFlags removes leading --flag=value words.
func dropFlags(words []string) []string {
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:]
	}
	return words
}

// splitArgs splits COPY arguments: the JSON form or whitespace-separated.
func splitArgs(s string) ([]string, error) {
	words := strings.Fields(s)
	var flags []string
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		flags, words = append(flags, words[0]), words[1:]
	}
	rest := strings.Join(words, " ")
	if strings.HasPrefix(rest, "[") {
		var a []string
		if err := json.Unmarshal([]byte(rest), &a); err != nil {
			return nil, fmt.Errorf("JSON form: %v", err)
		}
		return append(flags, a...), nil
	}
	return append(flags, words...), nil
}

// execForm parses ["a", "b"]; the shell form becomes /bin/sh -c TEXT.
func execForm(s string) ([]string, error) {
	if !strings.HasPrefix(s, "[") {
		return []string{"/bin/sh", "-c", s}, nil
	}
	var a []string
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return nil, fmt.Errorf("exec form: %v", err)
	}
	return a, nil
}

// Ignore is a parsed .dockerignore file.
type Ignore struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	text    string
	negate  bool
	re      *regexp.Regexp
	literal string // the part before the first wildcard
}

// ReadIgnore reads the ignore file BuildKit uses for a Dockerfile: the
// Dockerfile's own <name>.dockerignore if present, else .dockerignore at
// the root of the context. A missing file ignores nothing.
func ReadIgnore(dockerfile, context string) (*Ignore, string, error) {
	for _, p := range []string{dockerfile + ".dockerignore", filepath.Join(context, ".dockerignore")} {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		ig, err := ParseIgnore(string(b))
		return ig, p, err
	}
	return &Ignore{}, "", nil
}

// ParseIgnore parses .dockerignore text, with the semantics of
// moby/patternmatcher: a path is excluded when the last pattern matching it
// or one of its parent directories is not negated with "!"; "**" matches
// any number of directories.
func ParseIgnore(text string) (*Ignore, error) {
	ig := &Ignore{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{text: line}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.negate, line = true, strings.TrimSpace(rest)
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		re, err := globRegexp(line)
		if err != nil {
			return nil, fmt.Errorf("dockerignore pattern %q: %v", p.text, err)
		}
		p.re = re
		p.literal = line
		if i := strings.IndexAny(line, "*?["); i >= 0 {
			p.literal = line[:i]
		}
		ig.patterns = append(ig.patterns, p)
	}
	return ig, nil
}

func globRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case strings.HasPrefix(pattern[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(pattern[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [")
			}
			b.WriteString(pattern[i : i+j+1])
			i += j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Excluded reports whether rel, a slash-separated path relative to the
// context, is left out of the build context.
func (ig *Ignore) Excluded(rel string) bool {
	excluded := false
	for _, p := range ig.patterns {
		if p.matchesOrParent(rel) {
			excluded = !p.negate
		}
	}
	return excluded
}

func (p ignorePattern) matchesOrParent(rel string) bool {
	for q := rel; q != "." && q != "/" && q != ""; q = path.Dir(q) {
		if p.re.MatchString(q) {
			return true
		}
	}
	return false
}

// mayInclude reports whether some file under directory rel could be sent
// although rel itself is excluded: a negated pattern after the last one
// that matches rel reaches into it.
func (ig *Ignore) mayInclude(rel string) bool {
	last := -1
	for i, p := range ig.patterns {
		if p.matchesOrParent(rel) {
			last = i
		}
	}
	for _, p := range ig.patterns[last+1:] {
		if p.negate && (strings.HasPrefix(p.literal, rel+"/") || strings.HasPrefix(rel+"/", p.literal)) {
			return true
		}
	}
	return false
}

// SentFiles returns the files under rel (a file or directory relative to
// context) that the build context carries, slash-separated and relative to
// context.
func (ig *Ignore) SentFiles(context, rel string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(filepath.Join(context, rel), func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p != filepath.Join(context, rel) {
			return nil // removed while we walk (npm install running beside the tests)
		}
		if err != nil {
			return err
		}
		r, err := filepath.Rel(context, p)
		if err != nil {
			return err
		}
		r = filepath.ToSlash(r)
		if e.IsDir() {
			if r != "." && ig.Excluded(r) && !ig.mayInclude(r) {
				return filepath.SkipDir
			}
			return nil
		}
		if !ig.Excluded(r) {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
