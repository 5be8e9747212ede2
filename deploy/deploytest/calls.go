package deploytest

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Call is one run of one of our programs found in shell text.
type Call struct {
	Line    int
	Program string
	Args    []string
	Env     []string // NAME=VALUE given to it (assignments, docker -e)
	Via     string   // how it is started when not directly: "docker run", "docker compose run SERVICE", ...
}

// Images maps what the compose file builds to our programs: each image
// name, and each service name, to the argv its container starts with
// (entrypoint, then default command) as the Dockerfile stage it builds
// declares; services that override the entrypoint use theirs.
type Images struct {
	byImage   map[string][]string // entrypoint
	imageCmd  map[string][]string // default command, by image
	byService map[string][]string // entrypoint
	command   map[string][]string // default command, by service
}

// NewImages reads the Dockerfile stages of p's services.
func NewImages(p *Project) (*Images, error) {
	im := &Images{byImage: map[string][]string{}, imageCmd: map[string][]string{}, byService: map[string][]string{}, command: map[string][]string{}}
	for _, s := range p.Services {
		var stage *Stage
		if s.Build != nil {
			d, err := ParseDockerfile(s.Dockerfile())
			if err != nil {
				return nil, err
			}
			stage = d.Stages[len(d.Stages)-1]
			if s.Build.Target != "" {
				if stage = d.Stage(s.Build.Target); stage == nil {
					return nil, fmt.Errorf("service %s: %s has no stage %q", s.Name, s.Dockerfile(), s.Build.Target)
				}
			}
			im.byImage[s.Image], im.imageCmd[s.Image] = stage.Entrypoint, stage.Cmd
		}
		argv := s.Argv(stage)
		im.byService[s.Name] = argv[:len(argv)-len(s.Command)]
		if s.Entrypoint == nil && s.Command == nil && stage != nil {
			im.byService[s.Name] = stage.Entrypoint
		}
		im.command[s.Name] = argv[len(im.byService[s.Name]):]
	}
	return im, nil
}

// resolve turns the argv of a container (its entrypoint then arguments)
// into a call of one of our programs.
func resolve(argv []string) (program string, args []string) {
	if len(argv) == 0 {
		return "", nil
	}
	return ProgramName(argv[0]), argv[1:]
}

// Docker options that take a value, for the commands the guides use.
var (
	dockerRunValue = set("-e", "--env", "--env-file", "-v", "--volume", "--name", "--network", "--net",
		"--restart", "--cap-add", "--cap-drop", "-u", "--user", "-m", "--memory", "--memory-swap", "--cpus",
		"--sysctl", "--tmpfs", "-p", "--publish", "--entrypoint", "--security-opt", "-w", "--workdir",
		"--mount", "--pull", "--platform", "--log-opt", "--log-driver", "-h", "--hostname", "--label", "-l",
		"--add-host", "--dns", "--ulimit", "--pids-limit")
	dockerRunBool = set("-d", "--detach", "--rm", "-i", "-t", "-it", "-dit", "--init", "--read-only",
		"--interactive", "--tty", "--no-healthcheck")
	composeGlobalValue = set("-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory")
	composeRunValue    = set("-e", "--env", "--entrypoint", "--name", "-u", "--user", "-v", "--volume", "-w",
		"--workdir", "-p", "--publish", "--label", "-l", "--cap-add", "--cap-drop")
	composeRunBool = set("--rm", "-d", "--detach", "--no-deps", "-T", "-i", "--build", "--remove-orphans",
		"--service-ports", "--use-aliases", "--quiet-pull")
	composeExecValue = set("-e", "--env", "-u", "--user", "-w", "--workdir", "--index")
	composeExecBool  = set("-d", "--detach", "-T", "--privileged", "-i", "-t")
)

// wrappers run the command that follows them.
var wrappers = set("sudo", "exec", "env", "nohup")

func set(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[w] = true
	}
	return m
}

// options consumes the options of a docker command from words, returning
// the environment they set (-e), an --entrypoint override and the rest.
func options(words []string, value, boolean map[string]bool, what string) (env []string, entrypoint string, rest []string, err error) {
	for len(words) > 0 && strings.HasPrefix(words[0], "-") {
		opt, v, hasValue := strings.Cut(words[0], "=")
		switch {
		case boolean[opt] && !hasValue:
			words = words[1:]
			continue
		case value[opt] && hasValue:
			words = words[1:]
		case value[opt]:
			if len(words) < 2 {
				return nil, "", nil, fmt.Errorf("%s: %s needs a value", what, opt)
			}
			v, words = words[1], words[2:]
		default:
			return nil, "", nil, fmt.Errorf("%s: option %s is not one deploytest knows; add it to calls.go if it is right", what, words[0])
		}
		switch opt {
		case "-e", "--env":
			env = append(env, v)
		case "--entrypoint":
			entrypoint = v
		}
	}
	return env, entrypoint, words, nil
}

// Calls returns the calls of our programs among cmds: run directly (by
// path or name, a release file name included, also after sudo, env, exec,
// nohup, and inside sh -c), with `docker run IMAGE` for an image
// the compose file builds, with `docker compose run SERVICE` or `docker
// compose exec SERVICE PROGRAM`, or by OpenWrt's procd_set_param command.
// A program named as another command's argument (install, cp) is not a
// call.
func (im *Images) Calls(cmds []SimpleCommand) ([]Call, error) {
	var calls []Call
	for _, c := range cmds {
		argv := c.Argv
		env := c.Env
		for len(argv) > 0 && wrappers[argv[0]] {
			argv = argv[1:]
			for len(argv) > 0 && isAssignment(argv[0]) {
				env, argv = append(env, argv[0]), argv[1:]
			}
		}
		if len(argv) == 0 {
			continue
		}
		call := Call{Line: c.Line, Env: env}
		switch {
		case argv[0] == "docker" && len(argv) > 1 && argv[1] == "run":
			e, ep, rest, err := options(argv[2:], dockerRunValue, dockerRunBool, "docker run")
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", c.Line, err)
			}
			if len(rest) == 0 {
				return nil, fmt.Errorf("line %d: docker run without an image", c.Line)
			}
			image, _, _ := strings.Cut(rest[0], ":")
			base, ok := im.byImage[image]
			if !ok {
				continue // not one of ours
			}
			args := rest[1:]
			if len(args) == 0 && ep == "" {
				args = im.imageCmd[image]
			}
			container := append(entrypointOf(base, ep), args...)
			call.Program, call.Args = resolve(container)
			call.Env, call.Via = append(call.Env, e...), "docker run "+image
		case argv[0] == "docker" && len(argv) > 1 && argv[1] == "compose":
			_, _, rest, err := options(argv[2:], composeGlobalValue, nil, "docker compose")
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", c.Line, err)
			}
			if len(rest) == 0 || (rest[0] != "run" && rest[0] != "exec") {
				continue
			}
			value, boolean := composeRunValue, composeRunBool
			if rest[0] == "exec" {
				value, boolean = composeExecValue, composeExecBool
			}
			e, ep, words, err := options(rest[1:], value, boolean, "docker compose "+rest[0])
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", c.Line, err)
			}
			if len(words) == 0 {
				return nil, fmt.Errorf("line %d: docker compose %s without a service", c.Line, rest[0])
			}
			svc, ok := im.byService[words[0]]
			if !ok {
				return nil, fmt.Errorf("line %d: docker compose %s: no service %q in the compose file", c.Line, rest[0], words[0])
			}
			container := words[1:]
			if rest[0] == "run" {
				args := words[1:]
				if len(args) == 0 && ep == "" {
					args = im.command[words[0]]
				}
				container = append(entrypointOf(svc, ep), args...)
			}
			call.Program, call.Args = resolve(container)
			call.Env, call.Via = append(call.Env, e...), "docker compose "+rest[0]+" "+words[0]
		case len(argv) >= 3 && (argv[0] == "sh" || argv[0] == "bash") && argv[1] == "-c":
			inner, err := ShellCommands(argv[2])
			if err != nil {
				return nil, fmt.Errorf("line %d: %s -c: %v", c.Line, argv[0], err)
			}
			for i := range inner {
				inner[i].Line = c.Line
			}
			more, err := im.Calls(inner)
			if err != nil {
				return nil, err
			}
			calls = append(calls, more...)
			continue
		case len(argv) >= 3 && argv[0] == "procd_set_param" && argv[1] == "command":
			call.Program, call.Args = resolve(argv[2:])
			call.Via = "procd"
		default:
			call.Program, call.Args = resolve(argv)
		}
		if call.Program != "" {
			calls = append(calls, call)
		}
	}
	return calls, nil
}

// entrypointOf returns the entrypoint a container runs with: the override
// if any (docker's --entrypoint takes one word), else the image's or
// service's.
func entrypointOf(entrypoint []string, override string) []string {
	if override != "" {
		return []string{override}
	}
	return append([]string{}, entrypoint...)
}

// Check parses a call with the program's real flags and checks the
// OP25B_ variables it is given.
func (p *Programs) Check(c Call) error {
	inv, err := p.Parse(c.Program, c.Args)
	if err != nil {
		return err
	}
	for _, kv := range c.Env {
		name, _, _ := strings.Cut(kv, "=")
		if err := p.CheckEnv(inv, name); err != nil {
			return err
		}
	}
	return nil
}

// String shows a call as it could be typed.
func (c Call) String() string {
	s := strings.Join(append([]string{filepath.Base(c.Program)}, c.Args...), " ")
	if c.Via != "" {
		s += " (via " + c.Via + ")"
	}
	return s
}

// isAssignment reports whether w is NAME=VALUE, as env and sudo take it.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
