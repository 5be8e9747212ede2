package deploytest

import (
	"encoding/json"
	"io/fs"
	"maps"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
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
			ig, igPath, err := ReadIgnore(df, ctx)
			if err != nil {
				t.Fatal(err)
			}
			copies := 0
			for i, st := range d.Stages {
				for _, c := range st.Copies {
					if c.From != "" {
						if !strings.ContainsAny(c.From, "/:") && !slices.ContainsFunc(d.Stages[:i], func(s *Stage) bool { return s.Name == c.From }) {
							t.Errorf("%s:%d: COPY --from=%s: no earlier stage of that name", rel(df), c.Line, c.From)
						}
						continue
					}
					for _, src := range c.Sources {
						copies++
						matches, err := filepath.Glob(filepath.Join(ctx, src))
						if err != nil || len(matches) == 0 {
							t.Errorf("%s:%d: COPY %s: nothing at %s in the build context %s", rel(df), c.Line, src, src, rel(ctx))
							continue
						}
						for _, m := range matches {
							r, _ := filepath.Rel(ctx, m)
							sent, err := ig.SentFiles(ctx, r)
							if err != nil {
								t.Fatal(err)
							}
							if len(sent) == 0 {
								t.Errorf("%s:%d: COPY %s: %s exists but %s leaves it out of the build context", rel(df), c.Line, src, r, rel(igPath))
							}
						}
					}
				}
			}
			if copies == 0 {
				t.Errorf("%s copies nothing from its context: the check found no COPY", rel(df))
			}
		}
	}
}

// goBuild matches a RUN that builds Go packages: an optional "cd DIR &&"
// and the ./package arguments.
var (
	goBuildCd  = regexp.MustCompile(`(?:^|&&|;)\s*cd\s+(\S+)\s*&&`)
	goBuildPkg = regexp.MustCompile(`(?:^|\s)(\./[^\s"']+)`)
)

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
		for _, st := range d.Stages {
			for _, run := range st.Runs {
				if !strings.Contains(run, "go build") {
					continue
				}
				for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w"} {
					if !strings.Contains(run, flag) {
						t.Errorf("%s: stage %s: go build without %s", rel(df), st.Name, flag)
					}
				}
				dir := "."
				if m := goBuildCd.FindStringSubmatch(run); m != nil {
					dir = m[1]
				}
				var pkgs []string
				for _, m := range goBuildPkg.FindAllStringSubmatch(run, -1) {
					pkgs = append(pkgs, m[1])
				}
				if len(pkgs) == 0 {
					t.Errorf("%s: stage %s: go build of no ./package: cannot check its sources", rel(df), st.Name)
					continue
				}
				for _, ctx := range ctxs {
					checkGoSources(t, df, ctx, st, dir, pkgs)
				}
			}
		}
	}
}

func checkGoSources(t *testing.T, df, ctx string, st *Stage, dir string, pkgs []string) {
	t.Helper()
	ig, igPath, err := ReadIgnore(df, ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module"}, pkgs...)...)
	cmd.Dir = filepath.Join(ctx, dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: go list -deps %s in %s: %v", rel(df), strings.Join(pkgs, " "), rel(cmd.Dir), err)
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
			t.Fatal(err)
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
		t.Fatalf("%s: go list found no files of this repository for %s", rel(df), strings.Join(pkgs, " "))
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
		t.Errorf("%s: stage %s runs go build %s but copies nothing, or not to the same place under WORKDIR, of %s",
			rel(df), st.Name, strings.Join(pkgs, " "), strings.Join(missing, ", "))
	}
	if len(ignored) > 0 {
		t.Errorf("%s: stage %s needs files of %s, which %s leaves out of the build context",
			rel(df), st.Name, strings.Join(ignored, ", "), rel(igPath))
	}
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
