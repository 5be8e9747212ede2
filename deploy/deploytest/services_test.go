package deploytest

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// plistDict reads the top-level dict of a launchd property list: each key
// with its string value, its array of strings, or its nested dict's
// string values.
type plistDict struct {
	strings map[string]string
	arrays  map[string][]string
	dicts   map[string]map[string]string
}

func parsePlist(t *testing.T, path string) plistDict {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type node struct {
		XMLName xml.Name
		Text    string `xml:",chardata"`
		Nodes   []node `xml:",any"`
	}
	var doc struct {
		Dict node `xml:"dict"`
	}
	if err := xml.NewDecoder(f).Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := plistDict{map[string]string{}, map[string][]string{}, map[string]map[string]string{}}
	kids := doc.Dict.Nodes
	for i := 0; i+1 < len(kids); i += 2 {
		if kids[i].XMLName.Local != "key" {
			t.Fatalf("%s: <%s> where a <key> belongs", path, kids[i].XMLName.Local)
		}
		k, v := kids[i].Text, kids[i+1]
		switch v.XMLName.Local {
		case "array":
			for _, s := range v.Nodes {
				out.arrays[k] = append(out.arrays[k], s.Text)
			}
		case "dict":
			out.dicts[k] = map[string]string{}
			for j := 0; j+1 < len(v.Nodes); j += 2 {
				out.dicts[k][v.Nodes[j].Text] = v.Nodes[j+1].Text
			}
		default:
			out.strings[k] = v.Text
		}
	}
	return out
}

// TestLaunchdPlist: the macOS daemon definition runs `op25b-agent run`
// with flags and variables the program has, as nobody, from the place
// the guide installs it, keeping its state where the guide makes it.
func TestLaunchdPlist(t *testing.T) {
	pr := progs(t)
	p := parsePlist(t, filepath.Join(root, "deploy", "macos", "org.op25b.agent.plist"))
	argv := p.arrays["ProgramArguments"]
	if len(argv) < 2 || argv[0] != "/usr/local/bin/op25b-agent" || argv[1] != "run" {
		t.Fatalf("ProgramArguments %q; want /usr/local/bin/op25b-agent run ...", argv)
	}
	inv, err := pr.Parse("op25b-agent", argv[1:])
	if err != nil {
		t.Fatal(err)
	}
	if inv.Flags["collector"] == "" {
		t.Error("the plist gives no --collector")
	}
	if got, want := inv.Flags["state-dir"], "/Library/Application Support/op25b-agent"; got != want {
		t.Errorf("--state-dir %q; want %q, the directory the comment makes", got, want)
	}
	for name := range p.dicts["EnvironmentVariables"] {
		if err := pr.CheckEnv(inv, name); err != nil {
			t.Error(err)
		}
	}
	if p.strings["UserName"] != "nobody" || p.strings["Label"] != "org.op25b.agent" {
		t.Errorf("UserName %q, Label %q; want nobody, org.op25b.agent", p.strings["UserName"], p.strings["Label"])
	}
	comment, _ := os.ReadFile(filepath.Join(root, "deploy", "macos", "org.op25b.agent.plist"))
	if !strings.Contains(string(comment), `sudo chown nobody "/Library/Application Support/op25b-agent"`) {
		t.Error("the plist's instructions no longer give the state directory to nobody")
	}
}

// TestWindowsServiceScript: the flags the install script gives
// `op25b-agent run` exist, and the service name is the one the program
// answers the service control manager under.
func TestWindowsServiceScript(t *testing.T) {
	pr := progs(t)
	script, err := os.ReadFile(filepath.Join(root, "deploy", "windows", "install-service.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	flags, err := pr.Flags("op25b-agent", []string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, m := range regexp.MustCompile(`"--([a-z-]+)"`).FindAllStringSubmatch(string(script), -1) {
		found++
		if _, ok := flags[m[1]]; !ok {
			t.Errorf("install-service.ps1 gives --%s, which op25b-agent run does not have", m[1])
		}
	}
	if found < 2 {
		t.Errorf("install-service.ps1 gives %d flags; want --collector and --state-dir at least", found)
	}
	src, err := os.ReadFile(filepath.Join(root, "agent", "cmd", "op25b-agent", "service_windows.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `const serviceName = "op25b-agent"`) || !strings.Contains(string(script), `New-Service -Name "op25b-agent"`) {
		t.Error("the service name differs between install-service.ps1 and service_windows.go")
	}
}
