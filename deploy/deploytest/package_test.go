package deploytest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

// packaged is a file a package must hold: what it must be byte for byte
// (a file of the repository or of the release), and its mode.
type packaged struct {
	src  string
	mode fs.FileMode
}

// packageLayout is what a package of format must install, given the
// binary it packages and the systemd unit release.sh writes for it, and
// its maintainer scripts (the role nfpm gives each -> the committed file).
func packageLayout(format, binary, unit string) (map[string]packaged, map[string]string) {
	repo := func(p string) string { return filepath.Join(root, p) }
	files := map[string]packaged{"usr/bin/op25b-agent": {binary, 0o755}}
	var scripts map[string]string
	switch format {
	case "deb", "rpm":
		files["usr/lib/systemd/system/op25b-agent.service"] = packaged{unit, 0o644}
		files["etc/op25b/agent.env"] = packaged{repo("deploy/systemd/agent.env.example"), 0o600}
		scripts = map[string]string{
			"postinstall": "deploy/nfpm/systemd/postinstall.sh",
			"preremove":   "deploy/nfpm/systemd/preremove.sh",
			"postremove":  "deploy/nfpm/systemd/postremove.sh",
		}
	case "apk":
		files["etc/init.d/op25b-agent"] = packaged{repo("deploy/openrc/op25b-agent"), 0o755}
		files["etc/op25b/agent.env"] = packaged{repo("deploy/systemd/agent.env.example"), 0o600}
		scripts = map[string]string{
			"postinstall": "deploy/nfpm/openrc/postinstall.sh",
			"postupgrade": "deploy/nfpm/openrc/postupgrade.sh",
			"preremove":   "deploy/nfpm/openrc/preremove.sh",
		}
	case "ipk":
		files["etc/init.d/op25b-agent"] = packaged{repo("deploy/openwrt/op25b-agent"), 0o755}
		files["etc/op25b/agent.env"] = packaged{repo("deploy/openwrt/agent.env.example"), 0o600}
		files["lib/upgrade/keep.d/op25b-agent"] = packaged{repo("deploy/openwrt/op25b-agent.keep"), 0o644}
		scripts = map[string]string{
			"postinstall": "deploy/nfpm/openwrt/postinstall.sh",
			"preremove":   "deploy/nfpm/openwrt/preremove.sh",
		}
	}
	return files, scripts
}

// unpacked is a package opened by its format's own tools.
type unpacked struct {
	tree          string            // its files, as installed
	version, arch string            // as its metadata says
	scripts       map[string]string // maintainer scripts by role
	conffiles     []string          // the files it marks as configuration
}

// TestPackages runs deploy/release.sh as make release does, with a go that
// builds the linux/amd64 agent and writes a stand-in for every other
// platform (cross-compiling is the toolchain's business), then opens every
// package with its format's own tools (dpkg-deb, rpm, tar for apk and
// ipk): each holds the binary of its architecture, its init system's
// service definition, the settings and the maintainer scripts, with their
// modes, and says its version and architecture; the amd64 ones' agent
// runs. rpm installs its packages into a throwaway root, and so does dpkg
// the amd64 deb. The files are the ones --list names and SHA256SUMS
// covers, under a valid signature.
func TestPackages(t *testing.T) {
	testenv.Integration(t, "nfpm, and packages installed into a root file system")
	nfpm := filepath.Join(root, "bin", "nfpm")
	if _, err := os.Stat(nfpm); err != nil {
		testenv.Unavailable(t, "bin/nfpm is missing (make tools installs it)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "rpm", "tar", "minisign", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" is not installed (make testdeps installs it)")
		}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	pr := progs(t)

	work, dir := t.TempDir(), t.TempDir()
	fakeGo := filepath.Join(work, "go")
	if err := os.WriteFile(fakeGo, []byte(`#!/bin/sh
if [ "$1" = build ] && [ "$GOOS/$GOARCH" != linux/amd64 ]; then
	while [ $# -gt 1 ]; do [ "$1" = -o ] && out=$2; shift; done
	echo "stand-in for $GOOS/$GOARCH $GOARM" >"$out"
	exit
fi
exec '`+goTool+`' "$@"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "deploy", "release.sh"), "v9.8.7", dir)
	cmd.Env = append(os.Environ(), "GO="+fakeGo, "NFPM="+nfpm, "RELEASE_KEY="+filepath.Join(work, "release.key"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh v9.8.7: %v\n%s", err, out)
	}

	listed := releaseList(t, "v9.8.7")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, e := range entries {
		made = append(made, e.Name())
	}
	if !slices.Equal(made, slices.Sorted(slices.Values(listed))) {
		t.Errorf("release.sh made\n%q\nrelease.sh --list says\n%q", made, listed)
	}
	checkSums(t, dir, listed)
	if out, err := exec.Command("minisign", "-Vm", filepath.Join(dir, "SHA256SUMS"), "-p", filepath.Join(dir, "op25b-release.pub")).CombinedOutput(); err != nil {
		t.Errorf("minisign -Vm SHA256SUMS: %v\n%s", err, out)
	}

	unit, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "op25b-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	packagedUnit := filepath.Join(work, "op25b-agent.service")
	if err := os.WriteFile(packagedUnit, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/op25b-agent", "/usr/bin/op25b-agent")), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, p := range packages {
		name := packageFile(p.format, "9.8.7", p.arch)
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			var u *unpacked
			switch p.format {
			case "deb":
				u = openDeb(t, path)
			case "rpm":
				u = openRPM(t, path)
			case "apk":
				u = openAPK(t, path)
			case "ipk":
				u = openIPK(t, path)
			}
			if u.version != "9.8.7" || u.arch != p.arch {
				t.Errorf("version %q, architecture %q; want 9.8.7, %s", u.version, u.arch, p.arch)
			}
			files, scripts := packageLayout(p.format, filepath.Join(dir, "op25b-agent_v9.8.7_"+p.binary), packagedUnit)
			checkTree(t, u.tree, files)
			if p.format != "apk" && !slices.Equal(u.conffiles, []string{"/etc/op25b/agent.env"}) {
				t.Errorf("configuration files %q; want /etc/op25b/agent.env", u.conffiles)
			}
			if got := slices.Sorted(maps.Keys(u.scripts)); !slices.Equal(got, slices.Sorted(maps.Keys(scripts))) {
				t.Errorf("maintainer scripts %q; want %q", got, slices.Sorted(maps.Keys(scripts)))
			}
			for role, src := range scripts {
				if strings.TrimSpace(u.scripts[role]) != strings.TrimSpace(readText(t, filepath.Join(root, src))) {
					t.Errorf("%s script is not %s:\n%s", role, src, u.scripts[role])
				}
			}
			if p.binary == "linux_amd64" && runtime.GOARCH == "amd64" {
				out, err := exec.Command(filepath.Join(u.tree, "usr/bin/op25b-agent"), "version").CombinedOutput()
				if got := strings.TrimSpace(string(out)); err != nil || got != "op25b-agent v9.8.7" {
					t.Errorf("op25b-agent version: %q, %v; want op25b-agent v9.8.7", got, err)
				}
			}
		})
	}

	// The packaged unit runs the packaged binary, with the flags it has,
	// and systemd accepts it.
	u, err := parseUnit(packagedUnit)
	if err != nil {
		t.Fatal(err)
	}
	execStart, _ := u.last("ExecStart")
	cmds, err := ShellCommands(strings.ReplaceAll(execStart, "${STATE_DIRECTORY}", "/var/lib/op25b-agent"))
	if err != nil || len(cmds) != 1 || cmds[0].Argv[0] != "/usr/bin/op25b-agent" {
		t.Fatalf("packaged unit: ExecStart=%s (%v); want /usr/bin/op25b-agent", execStart, err)
	}
	if _, err := pr.Parse("op25b-agent", cmds[0].Argv[1:]); err != nil {
		t.Errorf("packaged unit: ExecStart: %v", err)
	}

	// dpkg itself takes the deb: --unpack runs no maintainer script (the
	// package has no preinst), so nothing touches this machine's systemd.
	debRoot := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(debRoot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(debRoot, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg", "--root="+debRoot, "--log=/dev/null", "--force-architecture", "--unpack", filepath.Join(dir, packageFile("deb", "9.8.7", "amd64")))
	installed := filepath.Join(debRoot, "usr/bin/op25b-agent")
	if _, err := os.Stat(installed); err != nil {
		t.Fatalf("dpkg --unpack: %v", err)
	}

	// systemd-analyze verify wants the binary where the unit says.
	verify := filepath.Join(t.TempDir(), "op25b-agent.service")
	if err := os.WriteFile(verify, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/op25b-agent", installed)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", verify).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify of the packaged unit: %v\n%s", err, out)
	}
}

// checkSums checks that dir's SHA256SUMS has a right checksum of every
// file listed but itself, its signature and the public key, and nothing
// else.
func checkSums(t *testing.T, dir string, listed []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var summed []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Errorf("SHA256SUMS: %q is not SUM  NAME", sc.Text())
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("SHA256SUMS names %s: %v", name, err)
			continue
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			t.Errorf("SHA256SUMS: %s: wrong checksum", name)
		}
		summed = append(summed, name)
	}
	want := slices.DeleteFunc(slices.Clone(listed), func(n string) bool {
		return n == "SHA256SUMS" || n == "SHA256SUMS.minisig" || n == "op25b-release.pub"
	})
	if !slices.Equal(summed, want) {
		t.Errorf("SHA256SUMS covers\n%q\nwant every file made:\n%q", summed, want)
	}
}

// checkTree checks that tree holds exactly want's regular files, each with
// its content and mode.
func checkTree(t *testing.T, tree string, want map[string]packaged) {
	t.Helper()
	got := map[string]bool{}
	err := filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		r, _ := filepath.Rel(tree, path)
		got[r] = true
		w, ok := want[r]
		if !ok {
			t.Errorf("unexpected file /%s", r)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode() != w.mode {
			t.Errorf("/%s: mode %v; want %v", r, info.Mode(), w.mode)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if wb, err := os.ReadFile(w.src); err != nil || string(b) != string(wb) {
			t.Errorf("/%s is not %s (%v)", r, filepath.Base(w.src), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := range want {
		if !got[r] {
			t.Errorf("no /%s", r)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// readScripts returns the files of dir named in roles (file -> role).
func readScripts(t *testing.T, dir string, roles map[string]string) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	for file, role := range roles {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		scripts[role] = string(b)
	}
	return scripts
}

// controlFields parses a deb or ipk control file.
func controlFields(text string) map[string]string {
	fields := map[string]string{}
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

var debianScripts = map[string]string{"postinst": "postinstall", "prerm": "preremove", "postrm": "postremove", "preinst": "preinstall"}

func openDeb(t *testing.T, path string) *unpacked {
	u := &unpacked{tree: t.TempDir()}
	control := t.TempDir()
	run(t, "dpkg-deb", "-x", path, u.tree)
	run(t, "dpkg-deb", "-e", path, control)
	f := controlFields(run(t, "dpkg-deb", "-f", path))
	u.version, u.arch = f["Version"], f["Architecture"]
	u.scripts = readScripts(t, control, debianScripts)
	u.conffiles = strings.Fields(readText(t, filepath.Join(control, "conffiles")))
	return u
}

// openRPM installs the package into a throwaway root with rpm itself
// (--noscripts, so nothing runs), whatever the machine's architecture.
func openRPM(t *testing.T, path string) *unpacked {
	u := &unpacked{tree: t.TempDir()}
	run(t, "rpm", "--root", u.tree, "--dbpath", "/rpmdb", "--initdb")
	run(t, "rpm", "--root", u.tree, "--dbpath", "/rpmdb", "--install", "--noscripts", "--nodeps", "--ignorearch", "--ignoreos", path)
	if err := os.RemoveAll(filepath.Join(u.tree, "rpmdb")); err != nil {
		t.Fatal(err)
	}
	f := strings.Split(run(t, "rpm", "-qp", "--qf", "%{VERSION}|%{RELEASE}|%{ARCH}", path), "|")
	if f[1] != "1" {
		t.Errorf("rpm release %s; want 1", f[1])
	}
	u.version, u.arch = f[0], f[2]
	u.scripts = map[string]string{}
	for tag, role := range map[string]string{"PREIN": "preinstall", "POSTIN": "postinstall", "PREUN": "preremove", "POSTUN": "postremove"} {
		if s := run(t, "rpm", "-qp", "--qf", "%{"+tag+"}", path); s != "(none)" {
			u.scripts[role] = s
		}
	}
	// Configuration files that an upgrade never overwrites: flags c and n.
	for line := range strings.Lines(run(t, "rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags}|%{FILENAMES}\n]", path)) {
		if flags, name, _ := strings.Cut(strings.TrimSpace(line), "|"); strings.Contains(flags, "c") {
			if !strings.Contains(flags, "n") {
				t.Errorf("rpm: %s is configuration without noreplace", name)
			}
			u.conffiles = append(u.conffiles, name)
		}
	}
	return u
}

// openAPK unpacks the package, one gzip stream of tar segments: the
// metadata and scripts are the dot files at its top.
func openAPK(t *testing.T, path string) *unpacked {
	dir := t.TempDir()
	run(t, "tar", "-xzf", path, "-C", dir, "--warning=no-unknown-keyword")
	info := map[string]string{}
	for line := range strings.Lines(readText(t, filepath.Join(dir, ".PKGINFO"))) {
		if k, v, ok := strings.Cut(line, " = "); ok {
			info[k] = strings.TrimSpace(v)
		}
	}
	u := &unpacked{tree: dir, version: info["pkgver"], arch: info["arch"]}
	u.scripts = readScripts(t, dir, map[string]string{".pre-install": "preinstall", ".post-install": "postinstall",
		".pre-upgrade": "preupgrade", ".post-upgrade": "postupgrade", ".pre-deinstall": "preremove", ".post-deinstall": "postremove"})
	dots, _ := filepath.Glob(filepath.Join(dir, ".*"))
	for _, d := range dots {
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// openIPK unpacks the package as opkg does: a tar.gz of control.tar.gz and
// data.tar.gz.
func openIPK(t *testing.T, path string) *unpacked {
	outer, control := t.TempDir(), t.TempDir()
	u := &unpacked{tree: t.TempDir()}
	run(t, "tar", "-xzf", path, "-C", outer)
	if b := readText(t, filepath.Join(outer, "debian-binary")); b != "2.0\n" {
		t.Errorf("debian-binary %q; want 2.0", b)
	}
	run(t, "tar", "-xzf", filepath.Join(outer, "control.tar.gz"), "-C", control)
	run(t, "tar", "-xzf", filepath.Join(outer, "data.tar.gz"), "-C", u.tree)
	f := controlFields(readText(t, filepath.Join(control, "control")))
	u.version, u.arch = f["Version"], f["Architecture"]
	u.scripts = readScripts(t, control, debianScripts)
	u.conffiles = strings.Fields(readText(t, filepath.Join(control, "conffiles")))
	return u
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scriptShells are the shells the init and maintainer scripts must work
// in: Debian's dash for POSIX sh, and busybox's ash, the sh of Alpine and
// OpenWrt.
var scriptShells = [][]string{{"sh"}, {"busybox", "sh"}}

// shellCalls runs harness in shell with args ($1, $2...), with nothing
// but PATH in the environment, and returns what it printed, a line each:
// the stubs print their name and arguments, |-separated.
func shellCalls(t *testing.T, shell []string, harness string, env []string, args ...string) []string {
	t.Helper()
	argv := append(slices.Clone(shell[1:]), "-c", `stub() { for f; do eval "$f() { printf %s $f; printf '|%s' \"\$@\"; echo; }"; done; }
`+harness, "harness")
	cmd := exec.Command(shell[0], append(argv, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(shell, " "), err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// envLines returns an environment file's NAME=value lines.
func envLines(t *testing.T, path string) []string {
	t.Helper()
	var lines []string
	for line := range strings.Lines(readText(t, path)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines
}

// TestPackageInitScripts runs the packages' init scripts (OpenRC's for
// Alpine, procd's for OpenWrt) and their user-making maintainer scripts in
// dash and busybox sh, with the init systems' functions stubbed: each runs
// /usr/bin/op25b-agent run with flags it has, as the user the package
// makes, whose home is the state directory it creates and passes as
// --state-dir, and gives the agent every setting of the agent.env the
// package installs, spaces and all, where the package installs it. Every
// maintainer script parses in both shells.
func TestPackageInitScripts(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		testenv.Unavailable(t, "busybox is not installed (make testdeps installs it)")
	}
	pr := progs(t)
	scripts, _ := filepath.Glob(filepath.Join(root, "deploy", "nfpm", "*", "*.sh"))
	if len(scripts) < 8 {
		t.Fatalf("deploy/nfpm has %d maintainer scripts; want the 8 of deb and rpm, apk and ipk", len(scripts))
	}
	openrc := filepath.Join(root, "deploy", "openrc", "op25b-agent")
	procd := filepath.Join(root, "deploy", "openwrt", "op25b-agent")
	systemdEnv := filepath.Join(root, "deploy", "systemd", "agent.env.example")
	openwrtEnv := filepath.Join(root, "deploy", "openwrt", "agent.env.example")

	// The agent as an init script starts it: its state directory and the
	// environment it gets.
	checkCommand := func(t *testing.T, argv []string) (stateDir string) {
		t.Helper()
		if len(argv) == 0 || argv[0] != "/usr/bin/op25b-agent" {
			t.Fatalf("runs %q; want /usr/bin/op25b-agent", argv)
		}
		inv, err := pr.Parse("op25b-agent", argv[1:])
		if err != nil || len(inv.Sub) != 1 || inv.Sub[0] != "run" || inv.Flags["state-dir"] == "" {
			t.Fatalf("runs %q (%v); want op25b-agent run --state-dir DIR", argv, err)
		}
		return inv.Flags["state-dir"]
	}
	checkEnvFile(t, pr, &Invocation{Program: "op25b-agent", Sub: []string{"run"}}, openwrtEnv)

	for _, shell := range scriptShells {
		t.Run(strings.Join(shell, "-"), func(t *testing.T) {
			for _, s := range append(slices.Clone(scripts), openrc, procd) {
				cmd := exec.Command(shell[0], append(slices.Clone(shell[1:]), "-n", s)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s -n %s: %v\n%s", strings.Join(shell, " "), rel(s), err, out)
				}
			}

			t.Run("openrc", func(t *testing.T) {
				out := shellCalls(t, shell, `stub checkpath
. "$1"
echo "agent_env|$agent_env"
echo "command|$command $command_args"
echo "command_user|$command_user"
agent_env=$2
start_pre || exit 1
env | grep -E '^(OP25B_|GOMEMLIMIT=)' | sed 's/^/env|/'`, nil, openrc, systemdEnv)
				var env, checkpath []string
				var stateDir, user string
				for _, line := range out {
					kind, rest, _ := strings.Cut(line, "|")
					switch kind {
					case "agent_env":
						if rest != "/etc/op25b/agent.env" {
							t.Errorf("reads %s; the apk installs /etc/op25b/agent.env", rest)
						}
					case "command":
						cmds, err := ShellCommands(rest)
						if err != nil || len(cmds) != 1 {
							t.Fatalf("command %q: %v", rest, err)
						}
						stateDir = checkCommand(t, cmds[0].Argv)
					case "command_user":
						user = rest
					case "checkpath":
						checkpath = strings.Split(rest, "|")
					case "env":
						env = append(env, rest)
					default:
						t.Errorf("unexpected output %q", line)
					}
				}
				if want := []string{"-d", "-m", "0700", "-o", user, stateDir}; !slices.Equal(checkpath, want) {
					t.Errorf("checkpath %q; want %q (the state directory, the agent's user)", checkpath, want)
				}
				if want := envLines(t, systemdEnv); !slices.Equal(slices.Sorted(slices.Values(env)), slices.Sorted(slices.Values(want))) {
					t.Errorf("the agent gets\n%q\nwant agent.env's\n%q", env, want)
				}

				adduser := shellCalls(t, shell, `stub addgroup adduser
. "$1"`, nil, filepath.Join(root, "deploy", "nfpm", "openrc", "postinstall.sh"))
				name, _, _ := strings.Cut(user, ":")
				if len(adduser) != 2 || adduser[0] != "addgroup|-S|"+name || !strings.HasPrefix(adduser[1], "adduser|-S|") ||
					!strings.HasSuffix(adduser[1], "|"+name) || !strings.Contains(adduser[1], "|-h|"+stateDir+"|") || !strings.Contains(adduser[1], "|-G|"+name+"|") {
					t.Errorf("postinstall: %q; want addgroup -S %s and adduser -S -G %[2]s -h %s ... %[2]s", adduser, name, stateDir)
				}
			})

			t.Run("procd", func(t *testing.T) {
				out := shellCalls(t, shell, `stub mkdir chown chmod procd_open_instance procd_set_param procd_close_instance
. "$1"
echo "agent_env|$agent_env"
agent_env=$2
start_service`, nil, procd, openwrtEnv)
				params := map[string][]string{}
				var stateDir string
				var calls []string
				for _, line := range out {
					f := strings.Split(line, "|")
					calls = append(calls, f[0])
					switch f[0] {
					case "agent_env":
						if f[1] != "/etc/op25b/agent.env" {
							t.Errorf("reads %s; the ipk installs /etc/op25b/agent.env", f[1])
						}
					case "procd_set_param":
						params[f[1]] = f[2:]
						if f[1] == "command" {
							stateDir = checkCommand(t, f[2:])
						}
					}
				}
				if i := slices.Index(calls, "procd_open_instance"); i < 0 || calls[len(calls)-1] != "procd_close_instance" || slices.Index(calls, "procd_set_param") < i {
					t.Errorf("calls %q; want the parameters between procd_open_instance and procd_close_instance", calls)
				}
				user := strings.Join(params["user"], "|")
				for _, want := range []string{"mkdir|-p|" + stateDir, "chown|" + user + ":" + user + "|" + stateDir, "chmod|0700|" + stateDir} {
					if !slices.Contains(out, want) {
						t.Errorf("no %q among %q: the state directory is the agent's own", want, out)
					}
				}
				if want := envLines(t, openwrtEnv); !slices.Equal(params["env"], want) {
					t.Errorf("env %q; want agent.env's %q", params["env"], want)
				}
				if got := params["file"]; !slices.Equal(got, []string{openwrtEnv}) {
					t.Errorf("file %q; want the agent.env it reads, so that reload restarts the agent on a change", got)
				}

				instroot := t.TempDir()
				if err := os.MkdirAll(filepath.Join(instroot, "lib"), 0o755); err != nil {
					t.Fatal(err)
				}
				functions := "group_add_next() { echo 32768; }\nuser_exists() { return 1; }\nstub user_add\n"
				if err := os.WriteFile(filepath.Join(instroot, "lib", "functions.sh"), []byte(functions), 0o644); err != nil {
					t.Fatal(err)
				}
				added := shellCalls(t, shell, `. "$1"`, []string{"IPKG_INSTROOT=" + instroot}, filepath.Join(root, "deploy", "nfpm", "openwrt", "postinstall.sh"))
				if want := []string{"user_add|" + user + "||32768|" + user + "|" + stateDir + "|/bin/false"}; !slices.Equal(added, want) {
					t.Errorf("postinstall: %q; want %q (the user, its group, the state directory as home)", added, want)
				}
			})
		})
	}
}
