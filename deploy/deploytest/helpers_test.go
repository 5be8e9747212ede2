package deploytest

import (
	"slices"
	"strings"
	"testing"
)

func TestShellCommands(t *testing.T) {
	text := `FOO=1 sudo op25b-agent check --refmta "a b" \
  --format json | jq . > out.json 2>&1  # a comment
for r in x y; do op25b export --start "${r%/*}" -o "$(date).csv"; done
sh -c 'op25b-collector token list && echo ok' &
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
		"for|r|in|x|y",
		"do|op25b|export|--start|${r%/*}|-o|$(date).csv",
		"done",
		"sh|-c|op25b-collector token list && echo ok",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ShellCommands =\n%q\nwant\n%q", got, want)
	}
	if cmds[3].Line != 3 {
		t.Errorf("line of the loop body = %d; want 3", cmds[3].Line)
	}
	if _, err := ShellCommands(`echo "unterminated`); err == nil {
		t.Errorf("ShellCommands of an unterminated quote succeeded")
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
