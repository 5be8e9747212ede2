package deploytest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// contexts returns every Dockerfile under deploy/docker with the build
// contexts the compose file builds it with; a Dockerfile no service builds
// is an error.
func contexts(t *testing.T) map[string][]string {
	t.Helper()
	p, _ := compose(t)
	out := map[string][]string{}
	for _, s := range p.Services {
		if df := s.Dockerfile(); df != "" && !slices.Contains(out[df], s.Build.Context) {
			out[df] = append(out[df], s.Build.Context)
		}
	}
	err := filepath.WalkDir(filepath.Join(root, "deploy", "docker"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Name() == "Dockerfile" && out[p] == nil {
			t.Errorf("%s: no service of docker-compose.yml builds it", rel(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDockerfileCopies checks that every path a Dockerfile copies from its
// build context exists and is sent in the context (its .dockerignore does
// not leave it out), and that every stage copied from exists.
func TestDockerfileCopies(t *testing.T) {
	for df, ctxs := range contexts(t) {
		d, err := ParseDockerfile(df)
		if err != nil {
			t.Fatal(err)
		}
		for _, ctx := range ctxs {
			if err := checkCopies(t.Errorf, df, ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkCopies reports, with errorf, what d copies from the build context
// ctx that is not there or not sent, and the stages it copies from that
// do not come before. An error means it could not check.
func checkCopies(errorf func(string, ...any), df, ctx string, d *Dockerfile) error {
	ig, igPath, err := ReadIgnore(df, ctx)
	if err != nil {
		return err
	}
	copies := 0
	for i, st := range d.Stages {
		for _, c := range st.Copies {
			if c.From != "" {
				if !strings.ContainsAny(c.From, "/:") && !slices.ContainsFunc(d.Stages[:i], func(s *Stage) bool { return s.Name == c.From }) {
					errorf("%s:%d: COPY --from=%s: no earlier stage of that name", rel(df), c.Line, c.From)
				}
				continue
			}
			for _, src := range c.Sources {
				copies++
				matches, err := filepath.Glob(filepath.Join(ctx, src))
				if err != nil || len(matches) == 0 {
					errorf("%s:%d: COPY %s: nothing at %s in the build context %s", rel(df), c.Line, src, src, rel(ctx))
					continue
				}
				for _, m := range matches {
					r, _ := filepath.Rel(ctx, m)
					sent, err := ig.SentFiles(ctx, r)
					if err != nil {
						return err
					}
					if len(sent) == 0 {
						errorf("%s:%d: COPY %s: %s exists but %s leaves it out of the build context", rel(df), c.Line, src, r, rel(igPath))
					}
				}
			}
		}
	}
	if copies == 0 {
		errorf("%s copies nothing from its context: the check found no COPY", rel(df))
	}
	return nil
}

// TestDockerfileGoSources checks, for every stage that runs go build, that
// the sources it copies cover every file of every package the build
// needs, from this repository (Go and embedded files, go.mod and go.sum),
// and that the .dockerignore sends them; and that the binaries are built
// static and stripped.
func TestDockerfileGoSources(t *testing.T) {
	for df, ctxs := range contexts(t) {
		d, err := ParseDockerfile(df)
		if err != nil {
			t.Fatal(err)
		}
		for _, ctx := range ctxs {
			if err := checkGoBuilds(t.Errorf, df, ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// goBuild is a go build a RUN runs.
type goBuild struct {
	dir       string // where it runs, relative to WORKDIR
	env, args []string
}

// goBuilds returns the go builds of a RUN's shell text, each in the
// directory the cd commands before it lead to.
func goBuilds(run string) ([]goBuild, error) {
	cmds, err := ShellCommands(run)
	if err != nil {
		return nil, err
	}
	dir := "."
	var builds []goBuild
	for _, c := range cmds {
		switch {
		case len(c.Argv) == 2 && c.Argv[0] == "cd":
			dir = path.Join(dir, c.Argv[1])
		case len(c.Argv) >= 2 && c.Argv[0] == "go" && c.Argv[1] == "build":
			builds = append(builds, goBuild{dir: dir, env: c.Env, args: c.Argv[2:]})
		}
	}
	return builds, nil
}

// checkGoBuilds reports, with errorf, each go build of d that is not static
// and stripped, or whose stage does not copy in every file it needs.
func checkGoBuilds(errorf func(string, ...any), df, ctx string, d *Dockerfile) error {
	for _, st := range d.Stages {
		for _, run := range st.Runs {
			builds, err := goBuilds(run)
			if err != nil {
				return fmt.Errorf("%s: stage %s: RUN %s: %w", rel(df), st.Name, run, err)
			}
			for _, b := range builds {
				var ldflags string
				var pkgs []string
				for i, a := range b.args {
					switch {
					case a == "-ldflags" && i+1 < len(b.args):
						ldflags = b.args[i+1]
					case strings.HasPrefix(a, "-ldflags="):
						ldflags = strings.TrimPrefix(a, "-ldflags=")
					case strings.HasPrefix(a, "./"):
						pkgs = append(pkgs, a)
					}
				}
				fields := strings.Fields(ldflags)
				for what, ok := range map[string]bool{
					"CGO_ENABLED=0":  slices.Contains(b.env, "CGO_ENABLED=0"),
					"-trimpath":      slices.Contains(b.args, "-trimpath"),
					"-ldflags -s -w": slices.Contains(fields, "-s") && slices.Contains(fields, "-w"),
				} {
					if !ok {
						errorf("%s: stage %s: go build without %s", rel(df), st.Name, what)
					}
				}
				if len(pkgs) == 0 {
					errorf("%s: stage %s: go build of no ./package: cannot check its sources", rel(df), st.Name)
					continue
				}
				if err := checkGoSources(errorf, df, ctx, st, b.dir, pkgs); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkGoSources(errorf func(string, ...any), df, ctx string, st *Stage, dir string, pkgs []string) error {
	ig, igPath, err := ReadIgnore(df, ctx)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module"}, pkgs...)...)
	cmd.Dir = filepath.Join(ctx, dir)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: go list -deps %s in %s: %v", rel(df), strings.Join(pkgs, " "), rel(cmd.Dir), err)
	}
	need := map[string]bool{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Dir, GoMod string }
		}
		if err := dec.Decode(&p); err != nil {
			return err
		}
		r, err := filepath.Rel(ctx, p.Dir)
		if err != nil || strings.HasPrefix(r, "..") {
			continue // the standard library or the module cache
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			need[filepath.ToSlash(filepath.Join(r, f))] = true
		}
		if p.Module != nil {
			mr, _ := filepath.Rel(ctx, p.Module.Dir)
			need[path.Join(filepath.ToSlash(mr), "go.mod")] = true
			need[path.Join(filepath.ToSlash(mr), "go.sum")] = true
		}
	}
	if len(need) == 0 {
		return fmt.Errorf("%s: go list found no files of this repository for %s", rel(df), strings.Join(pkgs, " "))
	}
	var missing, ignored []string
	for _, f := range slices.Sorted(maps.Keys(need)) {
		switch {
		case !copiedInPlace(st, f):
			missing = appendDir(missing, f)
		case ig.Excluded(f):
			ignored = appendDir(ignored, f)
		}
	}
	if len(missing) > 0 {
		errorf("%s: stage %s runs go build %s but copies nothing, or not to the same place under WORKDIR, of %s",
			rel(df), st.Name, strings.Join(pkgs, " "), strings.Join(missing, ", "))
	}
	if len(ignored) > 0 {
		errorf("%s: stage %s needs files of %s, which %s leaves out of the build context",
			rel(df), st.Name, strings.Join(ignored, ", "), rel(igPath))
	}
	return nil
}

// appendDir adds f's directory (or f, for a module file) to dirs once.
func appendDir(dirs []string, f string) []string {
	d := path.Dir(f) + "/"
	if b := path.Base(f); b == "go.mod" || b == "go.sum" {
		d = f
	}
	if !slices.Contains(dirs, d) {
		dirs = append(dirs, d)
	}
	return dirs
}

// copiedInPlace reports whether a COPY of st puts the context file f at
// the same relative path under the stage's WORKDIR.
func copiedInPlace(st *Stage, f string) bool {
	for _, c := range st.Copies {
		if c.From != "" {
			continue
		}
		dest := c.Dest
		if !path.IsAbs(dest) {
			dest = path.Join(st.Workdir, dest)
		}
		for _, src := range c.Sources {
			src = path.Clean(src)
			switch {
			case src == f && (dest == path.Join(st.Workdir, f) || strings.HasSuffix(c.Dest, "/") && path.Join(dest, path.Base(f)) == path.Join(st.Workdir, f)):
				return true
			case strings.HasPrefix(f, src+"/") && dest == path.Join(st.Workdir, src):
				return true
			case src == "." && dest == st.Workdir:
				return true
			}
		}
	}
	return false
}

// TestDockerfileImages checks the final stages the compose file builds:
// our programs run on distroless as the unprivileged user 65532, and the
// entrypoint is copied into the stage.
func TestDockerfileImages(t *testing.T) {
	p, _ := compose(t)
	for _, s := range p.Services {
		if s.Build == nil {
			continue
		}
		d, err := ParseDockerfile(s.Dockerfile())
		if err != nil {
			t.Fatal(err)
		}
		st := d.Stages[len(d.Stages)-1]
		if s.Build.Target != "" {
			st = d.Stage(s.Build.Target)
		}
		if st == nil {
			t.Errorf("service %s: %s has no stage %q", s.Name, rel(s.Dockerfile()), s.Build.Target)
			continue
		}
		if !strings.HasPrefix(st.From, "gcr.io/distroless/") {
			continue // the router and Grafana: not our programs
		}
		if !strings.HasSuffix(st.From, "nonroot") || (st.User != "65532:65532" && st.User != "65532") {
			t.Errorf("service %s: stage %s: FROM %s, USER %q; want a distroless nonroot image and USER 65532", s.Name, st.Name, st.From, st.User)
		}
		if len(st.Entrypoint) == 0 {
			t.Errorf("service %s: stage %s has no ENTRYPOINT", s.Name, st.Name)
			continue
		}
		prog := st.Entrypoint[0]
		if strings.HasPrefix(prog, "/busybox/") && len(st.Entrypoint) > 1 {
			prog = st.Entrypoint[1]
		}
		copied := slices.ContainsFunc(st.Copies, func(c Copy) bool {
			return slices.ContainsFunc(c.Sources, func(src string) bool {
				return path.Base(src) == path.Base(prog) || path.Join(c.Dest) == prog
			})
		})
		if !copied {
			t.Errorf("service %s: stage %s: ENTRYPOINT %s is not copied into the stage", s.Name, st.Name, prog)
		}
	}
}

// TestDockerfileChecksCatch runs the checks of TestDockerfileCopies and
// TestDockerfileGoSources on a small module with Dockerfiles that each
// have one mistake: each is reported.
func TestDockerfileChecksCatch(t *testing.T) {
	ctx := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":         "module example.com/x\n\ngo 1.26\n",
		"go.sum":         "",
		"cmd/x/main.go":  "package main\n\nimport \"example.com/x/lib\"\n\nfunc main() { lib.F() }\n",
		"lib/lib.go":     "package lib\n\nfunc F() {}\n",
		"secret/key.txt": "do not send\n",
		".dockerignore":  "secret/\n",
	} {
		p := filepath.Join(ctx, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const good = `FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY cmd/ cmd/
COPY lib/ lib/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/x
RUN cd cmd && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=1" -o /out/ ./x
FROM scratch
COPY --from=build /out/x /x
`
	for _, tc := range []struct{ old, new, want string }{
		{"", "", ""},
		{"COPY lib/ lib/\n", "", "copies nothing, or not to the same place under WORKDIR, of lib/"},
		{"COPY lib/ lib/\n", "COPY lib/ pkg/\n", "copies nothing, or not to the same place under WORKDIR, of lib/"},
		{"COPY go.mod go.sum ./\n", "COPY go.mod ./\n", "of go.sum"},
		{"RUN CGO_ENABLED=0 go", "RUN go", "go build without CGO_ENABLED=0"},
		{`-trimpath -ldflags "-s -w" -o /out/ ./cmd/x`, `-ldflags "-s -w" -o /out/ ./cmd/x`, "go build without -trimpath"},
		{`-ldflags="-s -w -X`, `-ldflags="-s -X`, "go build without -ldflags -s -w"},
		{" ./cmd/x\n", " cmd/x\n", "go build of no ./package"},
		{"COPY cmd/ cmd/\n", "COPY cmd/ cmd/\nCOPY docs/ docs/\n", "COPY docs/: nothing at docs/"},
		{"COPY cmd/ cmd/\n", "COPY cmd/ cmd/\nCOPY secret/ secret/\n", "COPY secret/: secret exists but"},
		{"--from=build", "--from=biuld", "COPY --from=biuld: no earlier stage"},
	} {
		text := strings.Replace(good, tc.old, tc.new, 1)
		if text == good && tc.old != "" {
			t.Fatalf("%q is not in the Dockerfile", tc.old)
		}
		df := filepath.Join(ctx, "Dockerfile")
		if err := os.WriteFile(df, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := ParseDockerfile(df)
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
		if err := checkCopies(errorf, df, ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := checkGoBuilds(errorf, df, ctx, d); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.want == "" && len(problems) > 0:
			t.Errorf("the good Dockerfile: %q", problems)
		case tc.want != "" && (len(problems) == 0 || slices.ContainsFunc(problems, func(p string) bool { return !strings.Contains(p, tc.want) })):
			t.Errorf("%q -> %q: problems %q; want each with %q", tc.old, tc.new, problems, tc.want)
		}
	}
}
