package deploytest

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/op25b/observatory/internal/flagenv"
)

// Commands are the packages of the programs the deployment runs, by
// program name.
var Commands = map[string]string{
	"op25b-agent":     "./agent/cmd/op25b-agent",
	"op25b-refmta":    "./refmta/cmd/op25b-refmta",
	"op25b-collector": "./collector/cmd/op25b-collector",
	"op25b":           "./collector/cmd/op25b",
}

// subcommand is one entry of a program's command grammar.
type subcommand struct {
	path []string
	// args is how many positional arguments follow the flags.
	minArgs, maxArgs int
	// noFlags: the subcommand takes no flags (and has no --help listing).
	noFlags bool
	// interleaved: it takes flags among its positional arguments, as
	// the programs in interleaved do.
	interleaved bool
}

// grammar lists each program's subcommands. The empty path is what runs
// when the first argument is a flag (or there is none). The subcommands
// and their positional arguments are our own grammar, which no library
// knows and the programs do not export, so they are written here; each
// subcommand's flags come from the program itself (Flags).
var grammar = map[string][]subcommand{
	"op25b-agent": {
		{path: []string{"check"}},
		{path: []string{"run"}},
		{path: []string{"version"}, noFlags: true},
	},
	"op25b-refmta": {
		{path: nil}, // serve
		{path: []string{"serve"}},
		{path: []string{"identity"}},
		{path: []string{"version"}, noFlags: true},
	},
	"op25b-collector": {
		{path: nil}, // serve
		{path: []string{"serve"}},
		{path: []string{"token", "create"}},
		{path: []string{"token", "list"}},
		{path: []string{"token", "revoke"}, minArgs: 1, maxArgs: 1},
		{path: []string{"principal", "revoke"}, minArgs: 1, maxArgs: 1},
		{path: []string{"summary"}},
		{path: []string{"rebuild"}},
		{path: []string{"webhook", "add"}, minArgs: 1, maxArgs: 1, interleaved: true},
		{path: []string{"webhook", "list"}},
		{path: []string{"webhook", "remove"}, minArgs: 1, maxArgs: 1, interleaved: true},
		{path: []string{"webhook", "enable"}, minArgs: 1, maxArgs: 1, interleaved: true},
		{path: []string{"archive"}},
		{path: []string{"version"}, noFlags: true},
	},
	"op25b": {
		{path: []string{"asns"}},
		{path: []string{"asn"}, minArgs: 1, maxArgs: 1},
		{path: []string{"peers"}, minArgs: 1, maxArgs: 1},
		{path: []string{"prefixes"}, minArgs: 1, maxArgs: 1},
		{path: []string{"changes"}},
		{path: []string{"countries"}},
		{path: []string{"info"}},
		{path: []string{"export"}},
		{path: []string{"watch"}},
		{path: []string{"help"}, maxArgs: 1, noFlags: true},
		{path: []string{"version"}, noFlags: true},
	},
}

// interleaved programs take flags among their positional arguments
// (op25b asn AS64500 --family ipv6); the others stop at the first
// positional argument, as Go's flag package does.
var interleaved = map[string]bool{"op25b": true}

// Programs are our programs built into a directory, and what their --help
// says about their flags.
type Programs struct {
	Dir string

	mu    sync.Mutex
	flags map[string]map[string]bool // "program sub..." -> flag -> takes a value
}

// BuildPrograms builds every program of Commands into dir.
func BuildPrograms(root, dir string) (*Programs, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, name := range slices.Sorted(maps.Keys(Commands)) {
		args = append(args, Commands[name])
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return &Programs{Dir: dir, flags: map[string]map[string]bool{}}, nil
}

// Path returns the built program's path.
func (p *Programs) Path(program string) string { return filepath.Join(p.Dir, program) }

// ProgramName returns which of our programs path names, by its base name
// (a release file such as op25b-agent_v1.0.0_linux_mipsle or op25b-agent_v1.0.0_windows_amd64.exe is op25b-agent),
// or "". OpenWrt's /etc/init.d/op25b-agent is not the program.
func ProgramName(path string) string {
	if strings.HasPrefix(path, "/etc/init.d/") {
		return "" // an init script named after the program
	}
	base := path[strings.LastIndexAny(path, "/")+1:]
	if _, ok := Commands[base]; ok {
		return base
	}
	if releaseName.MatchString(base) {
		return "op25b-agent"
	}
	return ""
}

var releaseName = regexp.MustCompile(`^op25b-agent_[^_/\s]+_(linux|windows|darwin|freebsd)_[a-z0-9]+(\.exe)?$`)

// flagLine matches a flag in the listing of Go's flag.PrintDefaults: the
// name, then the value's type unless the flag is a bool.
var flagLine = regexp.MustCompile(`^  -([^\s=]+)(?: (\S+))?(?:\t.*)?$`)

// Flags returns the flags of program's subcommand sub, each with whether it
// takes a value, from the program's own --help: the listing of Go's
// flag.PrintDefaults, a line per flag.
func (p *Programs) Flags(program string, sub []string) (map[string]bool, error) {
	key := strings.Join(append([]string{program}, sub...), " ")
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.flags[key]; ok {
		return f, nil
	}
	cmd := exec.Command(p.Path(program), append(slices.Clone(sub), "--help")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s --help: %v\n%s", key, err, out.String())
	}
	flags := map[string]bool{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2] != ""
		}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("%s --help lists no flags:\n%s", key, out.String())
	}
	p.flags[key] = flags
	return flags, nil
}

// Invocation is one parsed command line of a program.
type Invocation struct {
	Program string
	Sub     []string          // the subcommand path, such as [token create]
	Flags   map[string]string // flag name -> last value ("true" for bools)
	Args    []string          // positional arguments
}

// Parse checks args of program against its grammar and the flags its
// --help lists, with Go's flag package as the program parses them, and
// returns what they say. A --help or -h anywhere is accepted.
func (p *Programs) Parse(program string, args []string) (*Invocation, error) {
	subs, ok := grammar[program]
	if !ok {
		return nil, fmt.Errorf("%s is not one of our programs", program)
	}
	var sub *subcommand
	for i := range subs {
		s := &subs[i]
		if len(s.path) <= len(args) && slices.Equal(s.path, args[:len(s.path)]) && (sub == nil || len(s.path) > len(sub.path)) {
			sub = s
		}
	}
	if sub == nil || (len(sub.path) == 0 && len(args) > 0 && !strings.HasPrefix(args[0], "-")) {
		if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
			return &Invocation{Program: program, Flags: map[string]string{}}, nil
		}
		return nil, fmt.Errorf("%s: no subcommand %q", program, strings.Join(args, " "))
	}
	inv := &Invocation{Program: program, Sub: sub.path, Flags: map[string]string{}}
	name := strings.Join(append([]string{program}, sub.path...), " ")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if !sub.noFlags {
		flags, err := p.Flags(program, sub.path)
		if err != nil {
			return nil, err
		}
		for f, takesValue := range flags {
			fs.Var(recorder{inv.Flags, f, !takesValue}, f, "")
		}
	}
	rest := args[len(sub.path):]
	for {
		if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
			return inv, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		// Interleaved: a positional argument, then flags again, until "--".
		parsed := len(rest) - fs.NArg()
		if fs.NArg() == 0 || !interleaved[program] && !sub.interleaved || parsed > 0 && rest[parsed-1] == "--" {
			inv.Args = append(inv.Args, fs.Args()...)
			break
		}
		inv.Args, rest = append(inv.Args, fs.Arg(0)), fs.Args()[1:]
	}
	if n := len(inv.Args); n < sub.minArgs || n > sub.maxArgs {
		return nil, fmt.Errorf("%s: %d positional argument(s) %q; want %d to %d", name, n, inv.Args, sub.minArgs, sub.maxArgs)
	}
	if program == "op25b" && len(sub.path) == 1 && sub.path[0] == "help" && len(inv.Args) == 1 {
		if _, err := p.Parse("op25b", inv.Args[:1]); err != nil && !strings.Contains(err.Error(), "positional") {
			return nil, fmt.Errorf("op25b help %s: no such command", inv.Args[0])
		}
	}
	return inv, nil
}

// recorder is a flag of a FlagSet built from a --help listing: it keeps
// the last value given to it.
type recorder struct {
	values  map[string]string
	name    string
	boolean bool
}

func (r recorder) String() string { return "" }

func (r recorder) Set(v string) error {
	if r.boolean {
		if _, err := strconv.ParseBool(v); err != nil {
			return err
		}
	}
	r.values[r.name] = v
	return nil
}

func (r recorder) IsBoolFlag() bool { return r.boolean }

// CheckEnv checks that name, an environment variable given to inv's
// program, sets one of its flags (OP25B_<FLAG>, internal/flagenv), or is
// one the program reads itself (DATABASE_URL for the collector). Variables
// without the OP25B_ prefix are not the program's business and pass.
func (p *Programs) CheckEnv(inv *Invocation, name string) error {
	if !strings.HasPrefix(name, "OP25B_") {
		return nil
	}
	if inv.Program == "op25b" {
		// The CLI reads only OP25B_COLLECTOR from the environment.
		if name == flagenv.Name("OP25B", "collector") {
			return nil
		}
		return fmt.Errorf("op25b reads no %s (only OP25B_COLLECTOR)", name)
	}
	sub := inv.Sub
	if sub == nil {
		switch inv.Program {
		case "op25b-refmta", "op25b-collector":
			sub = []string{"serve"}
		default:
			return fmt.Errorf("%s: %s: no subcommand to take it", inv.Program, name)
		}
	}
	flags, err := p.Flags(inv.Program, sub)
	if err != nil {
		return err
	}
	for f := range flags {
		if flagenv.Name("OP25B", f) == name {
			return nil
		}
	}
	return fmt.Errorf("%s %s has no flag that %s sets", inv.Program, strings.Join(sub, " "), name)
}

// EnvFlag reports whether name sets a flag of any subcommand of any of
// our programs.
func (p *Programs) EnvFlag(name string) (bool, error) {
	for program, subs := range grammar {
		for _, s := range subs {
			if s.noFlags {
				continue
			}
			inv := &Invocation{Program: program, Sub: s.path}
			if len(s.path) == 0 {
				continue
			}
			err := p.CheckEnv(inv, name)
			if err == nil {
				return true, nil
			}
			if !strings.Contains(err.Error(), "has no flag") && !strings.Contains(err.Error(), "reads no") {
				return false, err
			}
		}
	}
	return false, nil
}
