package deploytest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestShellCommands(t *testing.T) {
	text := `FOO=1 sudo op25b-agent check --refmta "a b" \
  --format json | jq . > out.json 2>&1  # a comment
for r in x y; do op25b export --start "${r%/*}" -o "$(date).csv"; done
sh -c 'op25b-collector token list && echo ok' &
cat <<EOF >notes
op25b-agent run --not-a-command
EOF
token=$(op25b-collector token create --note "it's \"quoted\"") || exit 1
`
	cmds, err := ShellCommands(text)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmds {
		got = append(got, strings.Join(append(slices.Clone(c.Env), c.Argv...), "|"))
	}
	want := []string{
		"FOO=1|sudo|op25b-agent|check|--refmta|a b|--format|json",
		"jq|.",
		"op25b|export|--start|${r%/*}|-o|$(date).csv",
		"date",
		"sh|-c|op25b-collector token list && echo ok",
		"cat",
		`token=$(op25b-collector token create --note "it's \"quoted\"")`,
		`op25b-collector|token|create|--note|it's "quoted"`,
		"exit|1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ShellCommands =\n%q\nwant\n%q", got, want)
	}
	if cmds[2].Line != 3 {
		t.Errorf("line of the loop body = %d; want 3", cmds[2].Line)
	}
	for _, broken := range []string{
		`echo "unterminated`,
		`op25b-agent check --refmta 'unterminated`,
		`x=$(op25b-collector token list`,
		`for r in x y; do op25b export; `,
		`if true; then op25b-agent check`,
		`op25b-agent check | | jq .`,
	} {
		if _, err := ShellCommands(broken); err == nil {
			t.Errorf("ShellCommands(%q) succeeded; want a syntax error", broken)
		}
	}
}

func TestIgnore(t *testing.T) {
	ig, err := ParseIgnore(`# comment
*
!go.mod
!proto/
!deploy/docker/
**/testdata/
**/*_test.go
!dashboard/
dashboard/node_modules/
`)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"go.mod":                            false,
		"go.sum":                            true,
		"out/op25b-agent":                   true,
		"proto/op25b/v1/dataset.proto":      false,
		"proto/op25b/v1/x_test.go":          true,
		"proto/testdata/a":                  true,
		"deploy/docker/Dockerfile":          false,
		"deploy/release.sh":                 true,
		"dashboard/src/module.ts":           false,
		"dashboard/node_modules/react/a.js": true,
	} {
		if got := ig.Excluded(path); got != want {
			t.Errorf("Excluded(%q) = %v; want %v", path, got, want)
		}
	}
	if !ig.mayInclude("deploy") || ig.mayInclude("out") || ig.mayInclude("dashboard/node_modules") {
		t.Errorf("mayInclude: deploy %v, out %v, dashboard/node_modules %v; want true, false, false",
			ig.mayInclude("deploy"), ig.mayInclude("out"), ig.mayInclude("dashboard/node_modules"))
	}
}

func TestParse(t *testing.T) {
	pr := progs(t)
	for _, tc := range []struct {
		program string
		args    string
		ok      bool
	}{
		{"op25b-agent", "check --refmta x --family 4 --quiet", true},
		{"op25b-agent", "check --refmta=x -timeout 3s", true},
		{"op25b-agent", "check --refmta", false},          // needs a value
		{"op25b-agent", "check --collector x", false},     // a flag of run
		{"op25b-agent", "probe", false},                   // no such subcommand
		{"op25b-agent", "run --quiet", false},             // a flag of check
		{"op25b-refmta", "--listen 192.0.2.25", true},     // serve by default
		{"op25b-collector", "token revoke tok-1", true},   // one argument
		{"op25b-collector", "token revoke", false},        // missing it
		{"op25b-collector", "serve extra", false},         // no arguments
		{"op25b", "asn AS64500 --family ipv6", true},      // flags after arguments
		{"op25b", "export --start 2026-03-01 -o -", true}, // - is a value
		{"op25b", "help export", true},
		{"op25b", "help nonsense", false},
		{"op25b-collector", "token create --help", true},
		{"op25b-agent", "check --quiet=maybe", false},          // not a bool
		{"op25b-agent", "check -quiet=false --refmta x", true}, // a bool's value
		{"op25b", "asn AS64500 --bogus", false},                // an unknown flag after an argument
		{"op25b", "asn -- AS64500", true},                      // "--" ends the flags
		{"op25b", "asn AS64500 -- --family", false},            // two arguments after "--"
		{"op25b-collector", "token revoke tok-1 --all", false}, // not interleaved: --all is an argument
		{"op25b-agent", "version --json", false},               // takes no flags
	} {
		_, err := pr.Parse(tc.program, strings.Fields(tc.args))
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%s %s) = %v; want ok %v", tc.program, tc.args, err, tc.ok)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	d, err := parseDockerfile(strings.NewReader(`# syntax=docker/dockerfile:1
ARG GO=1.26
FROM --platform=$BUILDPLATFORM golang:${GO} AS Build
WORKDIR /src
COPY go.mod go.sum ./
COPY ["proto/", "proto/"]
WORKDIR cmd
RUN CGO_ENABLED=0 \
    go build -o /out/ ./x
FROM scratch AS final
COPY --from=build --chown=65532:65532 /out/x /usr/local/bin/
ADD deploy/x.tar /opt/
WORKDIR /var/lib/x
USER 65532:65532
HEALTHCHECK --interval=5s CMD ["x", "health"]
ENTRYPOINT ["/usr/local/bin/x"]
CMD serve --listen :25
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []*Stage{{
		Name: "build", From: "golang:${GO}", Workdir: "/src/cmd",
		Copies: []Copy{{Line: 5, Sources: []string{"go.mod", "go.sum"}, Dest: "./"}, {Line: 6, Sources: []string{"proto/"}, Dest: "proto/"}},
		Runs:   []string{"CGO_ENABLED=0     go build -o /out/ ./x"},
	}, {
		Name: "final", From: "scratch", Workdir: "/var/lib/x",
		Copies: []Copy{
			{Line: 11, From: "build", Sources: []string{"/out/x"}, Dest: "/usr/local/bin/"},
			{Line: 12, Sources: []string{"deploy/x.tar"}, Dest: "/opt/"},
		},
		User:        "65532:65532",
		Healthcheck: []string{"x", "health"},
		Entrypoint:  []string{"/usr/local/bin/x"},
		Cmd:         []string{"/bin/sh", "-c", "serve --listen :25"},
	}}
	if !reflect.DeepEqual(d.Stages, want) {
		t.Errorf("parseDockerfile =\n%s\nwant\n%s", stagesText(d.Stages), stagesText(want))
	}

	for _, tc := range []struct{ dockerfile, err string }{
		{"# nothing\n", "file with no instructions"},
		{"ARG VERSION=dev\n", "no FROM"},
		{"COPY a b\nFROM scratch\n", "no build stage"},
		{"FROM scratch AS\n", "FROM requires either one or three arguments"},
		{"FROM scratch\nCOPY a\n", "COPY requires at least two arguments"},
		{"FROM scratch\nCOPY --frm=build a b\n", "unknown flag: --frm"},
		{"FROM scratch\nCOPY $SRC /dst\n", `source "$SRC" has a variable`},
		{"FROM scratch\nENTRYPOINT [\"/x\"\n", "not a JSON array"},
		{"FROM scratch\nHEALTHCHECK ping\n", "Unknown type"},
		{"FROM scratch\nUSER\n", "USER requires exactly one argument"},
		{"FROM scratch\nRUN <<EOF\n", "unterminated heredoc"},
	} {
		_, err := parseDockerfile(strings.NewReader(tc.dockerfile))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseDockerfile(%q) = %v; want an error with %q", tc.dockerfile, err, tc.err)
		}
	}
}

func stagesText(stages []*Stage) string {
	var b strings.Builder
	for _, s := range stages {
		fmt.Fprintf(&b, "%+v\n", *s)
	}
	return b.String()
}
