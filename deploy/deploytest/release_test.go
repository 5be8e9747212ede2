package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/web"
	"github.com/op25b/observatory/internal/testenv"
)

// releaseMention is a release file name as the guides write it, with any
// version (VERSION, v1.2.3).
var releaseMention = regexp.MustCompile(`op25b-agent_[A-Za-z0-9.+-]+_((?:linux|windows|darwin|freebsd)_[a-z0-9]+)(?:\.exe)?`)

// packages are what make release packages the linux binaries as (issue
// 11): the format, the binary in it, and the architecture in the format's
// words. OpenWrt's names a CPU: one ipk per family, for its commonest
// routers.
var packages = []struct{ format, binary, arch string }{
	{"deb", "linux_amd64", "amd64"},
	{"rpm", "linux_amd64", "x86_64"},
	{"apk", "linux_amd64", "x86_64"},
	{"deb", "linux_arm64", "arm64"},
	{"rpm", "linux_arm64", "aarch64"},
	{"apk", "linux_arm64", "aarch64"},
	{"ipk", "linux_arm64", "aarch64_cortex-a53"},
	{"deb", "linux_armv7", "armhf"},
	{"rpm", "linux_armv7", "armv7hl"},
	{"apk", "linux_armv7", "armv7"},
	{"ipk", "linux_armv7", "arm_cortex-a7_neon-vfpv4"},
	{"ipk", "linux_mipsle", "mipsel_24kc"},
}

// packageFile is the name each format's tools give a package, nfpm's too:
// name_version_arch.deb (.apk, .ipk), name-version-release.arch.rpm.
func packageFile(format, version, arch string) string {
	if format == "rpm" {
		return "op25b-agent-" + version + "-1." + arch + ".rpm"
	}
	return "op25b-agent_" + version + "_" + arch + "." + format
}

var packageName = regexp.MustCompile(`\.(deb|rpm|apk|ipk)$`)

// releaseList returns what release.sh --list prints for version.
func releaseList(t *testing.T, version string) []string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(root, "deploy", "release.sh"), "--list", version).Output()
	if err != nil {
		t.Fatalf("release.sh --list %s: %v", version, err)
	}
	return strings.Fields(string(out))
}

// TestReleaseNames checks that the files `make release` makes are the ones
// the volunteer guide names: the same platforms, the same file name
// pattern (.exe on Windows), the packages, and SHA256SUMS, in out/release.
func TestReleaseNames(t *testing.T) {
	script := filepath.Join(root, "deploy", "release.sh")
	var arches, pkgs []string
	names := releaseList(t, "v9.8.7")
	// The collector serves a release directory by these names
	// (--download-dir): each file must be one it serves, for a tagged
	// release and for a commit's build alike.
	for _, n := range append(names, releaseList(t, "9fe10ce")...) {
		if !web.Served(n) {
			t.Errorf("release.sh makes %s, which the collector's /download/ does not serve (collector/web/downloads.go)", n)
		}
	}
	for _, n := range names {
		if n == "SHA256SUMS" || n == "SHA256SUMS.minisig" || n == "op25b-release.pub" {
			continue
		}
		if packageName.MatchString(n) {
			pkgs = append(pkgs, n)
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
	var wantPkgs []string
	for _, p := range packages {
		wantPkgs = append(wantPkgs, packageFile(p.format, "9.8.7", p.arch))
	}
	if !slices.Equal(pkgs, wantPkgs) {
		t.Errorf("release.sh packages\n%q\nthe issue wants\n%q", pkgs, wantPkgs)
	}
	for _, n := range []string{"SHA256SUMS", "SHA256SUMS.minisig", "op25b-release.pub"} {
		if !slices.Contains(names, n) {
			t.Errorf("release.sh makes no %s", n)
		}
	}

	volunteer := readGuide(t, "docs/volunteer.md")
	for _, p := range packages {
		if n := packageFile(p.format, "VERSION", p.arch); !strings.Contains(volunteer, n) {
			t.Errorf("docs/volunteer.md does not name %s", n)
		}
	}
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

// TestPackageVersions checks the packages' version that release.sh derives
// from the release's: valid for dpkg (the strictest of the four formats
// about characters), X.Y.Z for a release, and sorting before X.Y.Z for a
// build before it, as docs/volunteer.md says.
func TestPackageVersions(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		testenv.Unavailable(t, "dpkg is not installed")
	}
	for _, tc := range []struct{ version, want, release string }{
		{"v1.2.3", "1.2.3", ""},
		{"1.2.3", "1.2.3", ""},
		{"v1.2.3-rc.1", "1.2.3~rc.1", "1.2.3"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3~4.gabcdef0.dirty", "1.2.3"},
		{"v1.2.3+build_7", "1.2.3~build.7", "1.2.3"},
		{"v0.0.0-test", "0.0.0~test", "0.0.0"},
		{"9fe10ce", "0.0.0~9fe10ce", "0.0.0"},
		{"9fe10ce-dirty", "0.0.0~9fe10ce.dirty", "0.0.0"},
		{"v1.2", "0.0.0~v1.2", "0.0.0"},
	} {
		want := packageFile("rpm", tc.want, "x86_64")
		if names := releaseList(t, tc.version); !slices.Contains(names, want) {
			t.Errorf("release.sh --list %s: no %s in %q", tc.version, want, names)
		}
		if out, err := exec.Command("dpkg", "--validate-version", tc.want).CombinedOutput(); err != nil {
			t.Errorf("%s: package version %s: dpkg --validate-version: %v %s", tc.version, tc.want, err, out)
		}
		if tc.release != "" {
			if err := exec.Command("dpkg", "--compare-versions", tc.want, "lt", tc.release).Run(); err != nil {
				t.Errorf("%s: package version %s does not sort before %s: %v", tc.version, tc.want, tc.release, err)
			}
		}
	}
}
