package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func check(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValid(t *testing.T) {
	t.Setenv("PASSWORD", "from-the-environment")
	code, out, errOut := check(t, "testdata/valid.yml")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Defaults, not the caller's environment, unless -os-env.
	if !strings.Contains(out, "POSTGRES_PASSWORD: secret") || !strings.Contains(out, "condition: service_healthy") {
		t.Errorf("normalized output lacks the default or depends_on:\n%s", out)
	}
	if code, out, _ := check(t, "-os-env", "-format", "json", "testdata/valid.yml"); code != 0 || !strings.Contains(out, `"POSTGRES_PASSWORD": "from-the-environment"`) {
		t.Errorf("-os-env -format json: exit %d:\n%s", code, out)
	}
	if code, out, _ := check(t, "-q", "testdata/valid.yml"); code != 0 || out != "" {
		t.Errorf("-q: exit %d, output %q; want 0 and nothing", code, out)
	}
}

// TestInvalid checks that what `docker compose config` refuses is refused.
func TestInvalid(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":        {"services:\n  a:\n    image: x\n    bogus: 1\n", "bogus"},
		"undefined service":  {"services:\n  a:\n    image: x\n    depends_on: [b]\n", `undefined service "b"`},
		"network_mode":       {"services:\n  a:\n    image: x\n    network_mode: service:nope\n", `"nope"`},
		"undefined network":  {"services:\n  a:\n    image: x\n    networks: [n]\n", "undefined network n"},
		"required variable":  {"services:\n  a:\n    image: ${IMG:?need IMG}\n", "need IMG"},
		"cycle":              {"services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n", "cycle"},
		"bad port":           {"services:\n  a:\n    image: x\n    ports: [\"70000:80\"]\n", "70000"},
		"no image nor build": {"services:\n  a:\n    command: [x]\n", "image"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "compose.yml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := check(t, "-q", f)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, %q; want 1 and an error mentioning %q", code, errOut, tc.want)
			}
		})
	}
	if code, _, _ := check(t, "-format", "toml"); code != 2 {
		t.Errorf("-format toml: exit %d; want 2", code)
	}
}
