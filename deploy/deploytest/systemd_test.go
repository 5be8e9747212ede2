package deploytest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

// unit is a parsed systemd unit file: section -> key -> values in order
// (an empty assignment resets a list, as systemd does).
type unit map[string]map[string][]string

func parseUnit(path string) (unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("%s:%d: not KEY=VALUE in a section", path, n)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if v == "" {
				u[section][k] = []string{""}
				continue
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u, sc.Err()
}

// last returns the value in force of a [Service] key ("" when unset).
func (u unit) last(key string) (string, bool) {
	v := u["Service"][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// hardening is what every unit promises (docs/operator.md, docs/volunteer.md).
var hardening = map[string]string{
	"DynamicUser":             "yes",
	"NoNewPrivileges":         "yes",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"PrivateDevices":          "yes",
	"ProtectKernelTunables":   "yes",
	"ProtectKernelModules":    "yes",
	"ProtectKernelLogs":       "yes",
	"ProtectControlGroups":    "yes",
	"RestrictNamespaces":      "yes",
	"LockPersonality":         "yes",
	"MemoryDenyWriteExecute":  "yes",
	"RestrictSUIDSGID":        "yes",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}

// units are the systemd units and what sets each apart.
var units = []struct {
	file, program, envFile, stateDir, capability string
}{
	{"op25b-agent.service", "op25b-agent", "-/etc/op25b/agent.env", "op25b-agent", ""},
	{"op25b-refmta.service", "op25b-refmta", "-/etc/op25b/refmta.env", "op25b-refmta", "CAP_NET_BIND_SERVICE"},
	{"op25b-collector.service", "op25b-collector", "/etc/op25b/collector.env", "op25b-collector", ""},
}

// TestSystemdUnits checks the units' hardening and capabilities (none for
// the agent and the collector, exactly CAP_NET_BIND_SERVICE for the
// reference MTA), their command lines and example environment files
// against the programs' flags, and runs systemd-analyze verify and
// security on them.
func TestSystemdUnits(t *testing.T) {
	pr := progs(t)
	dir := filepath.Join(root, "deploy", "systemd")
	found, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	if len(found) != len(units) {
		t.Errorf("deploy/systemd has %d units; the test knows %d", len(found), len(units))
	}
	verifyDir := t.TempDir()
	var toVerify []string
	for _, want := range units {
		path := filepath.Join(dir, want.file)
		u, err := parseUnit(path)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hardening {
			if got, _ := u.last(k); got != v {
				t.Errorf("%s: %s=%s; want %s", want.file, k, got, v)
			}
		}
		if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
			t.Errorf("%s: SystemCallFilter does not allow only @system-service", want.file)
		}
		for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
			got, set := u.last(k)
			if !set || got != want.capability {
				t.Errorf("%s: %s=%s (set: %v); want exactly %q", want.file, k, got, set, want.capability)
			}
		}
		if got, _ := u.last("StateDirectory"); got != want.stateDir {
			t.Errorf("%s: StateDirectory=%s; want %s", want.file, got, want.stateDir)
		}
		if got, _ := u.last("EnvironmentFile"); got != want.envFile {
			t.Errorf("%s: EnvironmentFile=%s; want %s", want.file, got, want.envFile)
		}

		execStart, _ := u.last("ExecStart")
		cmds, err := ShellCommands(strings.ReplaceAll(execStart, "${STATE_DIRECTORY}", "/var/lib/"+want.stateDir))
		if err != nil || len(cmds) != 1 {
			t.Fatalf("%s: ExecStart=%s: %v", want.file, execStart, err)
		}
		argv := cmds[0].Argv
		if argv[0] != "/usr/local/bin/"+want.program {
			t.Errorf("%s: ExecStart runs %s; want /usr/local/bin/%s", want.file, argv[0], want.program)
		}
		inv, err := pr.Parse(want.program, argv[1:])
		if err != nil {
			t.Errorf("%s: ExecStart: %v", want.file, err)
			continue
		}
		example := filepath.Join(dir, strings.TrimSuffix(filepath.Base(strings.TrimPrefix(want.envFile, "-")), ".env")+".env.example")
		checkEnvFile(t, pr, inv, example)

		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		copyPath := filepath.Join(verifyDir, want.file)
		text := strings.ReplaceAll(string(b), "/usr/local/bin/"+want.program, pr.Path(want.program))
		if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		toVerify = append(toVerify, copyPath)
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			testenv.Unavailable(t, "systemd-analyze is not installed")
		}
		// verify reports problems on stderr and still exits 0 for most.
		cmd := exec.Command("systemd-analyze", append([]string{"verify"}, toVerify...)...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		for _, u := range toVerify {
			// Exposure 2.0 or less of 10 (systemd rates 0-1 "safe" ... 9 "unsafe").
			cmd := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", u)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("systemd-analyze security %s: %v\n%s", filepath.Base(u), err, out)
			}
		}
	})
}

// checkEnvFile checks that every variable of an example environment file
// sets a flag of inv's program.
func checkEnvFile(t *testing.T, pr *Programs, inv *Invocation, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	n := 0
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s:%d: not NAME=VALUE", rel(path), i+1)
			continue
		}
		n++
		if err := pr.CheckEnv(inv, name); err != nil {
			t.Errorf("%s:%d: %v", rel(path), i+1, err)
		}
	}
	if n == 0 {
		t.Errorf("%s sets nothing", rel(path))
	}
}
