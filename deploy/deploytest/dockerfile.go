package deploytest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"mvdan.cc/sh/v3/syntax"
)

// Dockerfile is what the checks read of a Dockerfile: its stages, in order.
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

// ParseDockerfile reads a Dockerfile with BuildKit's own parser and keeps
// what the checks need. Build arguments in paths are not expanded: a COPY
// source from the build context with a $ is an error, since it could not
// be checked.
func ParseDockerfile(file string) (*Dockerfile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := parseDockerfile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	d.Path = file
	return d, nil
}

func parseDockerfile(r io.Reader) (*Dockerfile, error) {
	ast, err := parser.Parse(r)
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	d := &Dockerfile{}
	for _, s := range stages {
		st := &Stage{Name: s.Name, From: s.BaseName, Workdir: "/"}
		for _, cmd := range s.Commands {
			var err error
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				err = st.addCopy(c, c.From, c.SourcesAndDest)
			case *instructions.AddCommand:
				err = st.addCopy(c, "", c.SourcesAndDest)
			case *instructions.RunCommand:
				st.Runs = append(st.Runs, shellText(c.ShellDependantCmdLine))
			case *instructions.WorkdirCommand:
				if path.IsAbs(c.Path) {
					st.Workdir = path.Clean(c.Path)
				} else {
					st.Workdir = path.Join(st.Workdir, c.Path)
				}
			case *instructions.UserCommand:
				st.User = c.User
			case *instructions.EntrypointCommand:
				st.Entrypoint, err = argv(c.ShellDependantCmdLine)
			case *instructions.CmdCommand:
				st.Cmd, err = argv(c.ShellDependantCmdLine)
			case *instructions.HealthCheckCommand:
				switch test := c.Health.Test; test[0] {
				case "CMD":
					st.Healthcheck = test[1:]
				case "CMD-SHELL":
					st.Healthcheck = []string{"/bin/sh", "-c", test[1]}
				}
			}
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", line(cmd), cmd.Name(), err)
			}
		}
		d.Stages = append(d.Stages, st)
	}
	return d, nil
}

func (st *Stage) addCopy(cmd instructions.Command, from string, sd instructions.SourcesAndDest) error {
	if from == "" {
		for _, s := range sd.SourcePaths {
			if strings.Contains(s, "$") {
				return fmt.Errorf("source %q has a variable: it cannot be checked", s)
			}
		}
	}
	st.Copies = append(st.Copies, Copy{Line: line(cmd), From: from, Sources: sd.SourcePaths, Dest: sd.DestPath})
	return nil
}

func line(cmd instructions.Command) int {
	if loc := cmd.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// argv returns what an ENTRYPOINT or CMD runs: the exec form's words, the
// shell form under /bin/sh -c. BuildKit takes a malformed exec form for
// the shell form; here it is an error.
func argv(c instructions.ShellDependantCmdLine) ([]string, error) {
	if !c.PrependShell {
		return c.CmdLine, nil
	}
	text := strings.Join(c.CmdLine, " ")
	if strings.HasPrefix(text, "[") {
		return nil, fmt.Errorf("%s: not a JSON array of strings", text)
	}
	return []string{"/bin/sh", "-c", text}, nil
}

// shellText returns a RUN as shell text: the exec form quoted.
func shellText(c instructions.ShellDependantCmdLine) string {
	if c.PrependShell {
		return strings.Join(c.CmdLine, " ")
	}
	words := make([]string, len(c.CmdLine))
	for i, w := range c.CmdLine {
		q, err := syntax.Quote(w, syntax.LangBash)
		if err != nil {
			q = w
		}
		words[i] = q
	}
	return strings.Join(words, " ")
}

// Ignore is a parsed .dockerignore file.
type Ignore struct {
	pm *patternmatcher.PatternMatcher
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
	ig, err := ParseIgnore("")
	return ig, "", err
}

// ParseIgnore parses .dockerignore text as Docker does (moby's
// patternmatcher and ignorefile).
func ParseIgnore(text string) (*Ignore, error) {
	patterns, err := ignorefile.ReadAll(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("dockerignore: %w", err)
	}
	return &Ignore{pm: pm}, nil
}

// Excluded reports whether rel, a slash-separated path relative to the
// context, is left out of the build context: the last pattern matching it
// or one of its parent directories is not negated with "!".
func (ig *Ignore) Excluded(rel string) bool {
	excluded, err := ig.pm.MatchesOrParentMatches(rel)
	return err == nil && excluded
}

// mayInclude reports whether some file under directory rel could be sent
// although rel itself is excluded: a negated pattern reaches into it. It is
// the test Docker's context walk makes before it skips a directory.
func (ig *Ignore) mayInclude(rel string) bool {
	for _, p := range ig.pm.Patterns() {
		if p.Exclusion() && strings.HasPrefix(p.String()+"/", rel+"/") {
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
