package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

func TestApply(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("OP25B_ENROLL", "op25b-agent-secret \t\nsecond line ignored\n")
	write("REMOVED", "")
	write("REPLACED", "new")
	write(".hidden", "x")
	if err := os.Mkdir(filepath.Join(dir, "SUBDIR"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := apply([]string{"PATH=/bin", "REMOVED=1", "REPLACED=old"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"OP25B_ENROLL=op25b-agent-secret", "PATH=/bin", "REPLACED=new"}
	if !slices.Equal(got, want) {
		t.Errorf("apply = %q; want %q", got, want)
	}
	if _, err := apply(nil, filepath.Join(dir, "missing")); err == nil {
		t.Errorf("apply of a missing directory succeeded; want an error")
	}
}

// TestExec runs the built command the way docker-compose.yml does and checks
// that the program sees the variables and keeps its own exit status.
func TestExec(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "envdir")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "OP25B_ENROLL"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		testenv.Unavailable(t, "no sh to run under envdir")
	}
	cmd := exec.Command(bin, dir, sh, "-c", `echo "$OP25B_ENROLL"; exit 7`)
	out, err := cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != 7 || strings.TrimSpace(string(out)) != "tok" {
		t.Errorf("envdir DIR sh -c ...: exit %d (%v), output %q; want 7 and \"tok\"", code, err, out)
	}
	cmd = exec.Command(bin, filepath.Join(dir, "missing"), sh, "-c", "exit 0")
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 111 {
		t.Errorf("envdir with a missing directory: %v; want exit status 111", err)
	}
}
