package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// releaseMention is a release file name as the guides write it, with any
// version (VERSION, v1.2.3).
var releaseMention = regexp.MustCompile(`op25b-agent_[A-Za-z0-9.+-]+_((?:linux|windows|darwin|freebsd)_[a-z0-9]+)(?:\.exe)?`)

// TestReleaseNames checks that the files `make release` makes are the ones
// the volunteer guide names: the same platforms, the same file name
// pattern (.exe on Windows), and SHA256SUMS, in out/release.
func TestReleaseNames(t *testing.T) {
	script := filepath.Join(root, "deploy", "release.sh")
	out, err := exec.Command("bash", script, "--list", "v9.8.7").Output()
	if err != nil {
		t.Fatalf("release.sh --list: %v", err)
	}
	var arches []string
	names := strings.Fields(string(out))
	for _, n := range names {
		if n == "SHA256SUMS" || n == "SHA256SUMS.minisig" || n == "op25b-release.pub" {
			continue
		}
		m := releaseMention.FindStringSubmatch(n)
		if m == nil || m[0] != n || !strings.HasPrefix(n, "op25b-agent_v9.8.7_") || ProgramName(n) != "op25b-agent" ||
			strings.HasPrefix(m[1], "windows_") != strings.HasSuffix(n, ".exe") {
			t.Errorf("release.sh makes %s: want op25b-agent_VERSION_OS_ARCH, with .exe for Windows", n)
			continue
		}
		arches = append(arches, m[1])
	}
	if want := []string{"linux_amd64", "linux_arm64", "linux_armv7", "linux_mipsle", "windows_amd64", "windows_arm64",
		"darwin_amd64", "darwin_arm64", "freebsd_amd64"}; !slices.Equal(arches, want) {
		t.Errorf("release.sh makes %v; the issue wants %v", arches, want)
	}
	for _, n := range []string{"SHA256SUMS", "SHA256SUMS.minisig", "op25b-release.pub"} {
		if !slices.Contains(names, n) {
			t.Errorf("release.sh makes no %s", n)
		}
	}

	volunteer := readGuide(t, "docs/volunteer.md")
	mentioned := map[string]bool{}
	for _, g := range guides {
		for _, m := range releaseMention.FindAllStringSubmatch(readGuide(t, g), -1) {
			if !slices.Contains(arches, m[1]) {
				t.Errorf("%s names %s, which make release does not make", g, m[0])
			}
			mentioned[m[1]] = true
		}
	}
	for _, a := range arches {
		if !strings.Contains(volunteer, "op25b-agent_VERSION_"+a) {
			t.Errorf("docs/volunteer.md does not name op25b-agent_VERSION_%s", a)
		}
	}
	if !strings.Contains(volunteer, "out/release/") || !strings.Contains(volunteer, "SHA256SUMS") ||
		!strings.Contains(volunteer, "minisign -Vm SHA256SUMS -p op25b-release.pub") {
		t.Errorf("docs/volunteer.md does not say the files are in out/release/ with SHA256SUMS and how to check its signature")
	}
	mk, err := os.ReadFile(filepath.Join(root, "deploy", "deploy.mk"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "RELEASE_DIR ?= $(OUT)/release") || !strings.Contains(string(mk), "deploy/release.sh $(VERSION) $(RELEASE_DIR)") {
		t.Errorf("deploy/deploy.mk: make release no longer runs deploy/release.sh $(VERSION) into $(OUT)/release")
	}

	// A version goes into file names: one that could escape the directory
	// is refused before anything is built.
	cmd := exec.Command("bash", script, "../v1", t.TempDir())
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("release.sh ../v1: %v; want exit status 2", err)
	}
}
