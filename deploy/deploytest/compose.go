package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Project is the part of a normalized Compose model (`docker compose config
// --format json`) the checks read.
type Project struct {
	Name     string              `json:"name"`
	Services map[string]*Service `json:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet  string `json:"subnet"`
				IPRange string `json:"ip_range"`
				Gateway string `json:"gateway"`
			} `json:"config"`
		} `json:"ipam"`
	} `json:"networks"`
	Volumes map[string]any `json:"volumes"`
}

// Service is one service of a Project. Paths are absolute.
type Service struct {
	Name  string `json:"-"`
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
		Target     string `json:"target"`
	} `json:"build"`
	Entrypoint  []string           `json:"entrypoint"`
	Command     []string           `json:"command"`
	Environment map[string]*string `json:"environment"`
	Volumes     []Mount            `json:"volumes"`
	Networks    map[string]*struct {
		IPv4Address string `json:"ipv4_address"`
	} `json:"networks"`
	NetworkMode string `json:"network_mode"`
	Healthcheck *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Sysctls  map[string]string `json:"sysctls"`
	CapAdd   []string          `json:"cap_add"`
	Profiles []string          `json:"profiles"`
}

// Mount is a volume or bind mount of a service.
type Mount struct {
	Type     string `json:"type"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
}

// Env returns the value of a service's environment variable, or "".
func (s *Service) Env(name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// Dockerfile returns the absolute path of the service's Dockerfile, or "".
func (s *Service) Dockerfile() string {
	if s.Build == nil {
		return ""
	}
	df := s.Build.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(s.Build.Context, df)
	}
	return df
}

// Argv returns what the service's container runs: its entrypoint and
// command, or, when both are empty in the Compose file, those of its image
// (from the Dockerfile stage it builds; nil when it has none of ours).
func (s *Service) Argv(image *Stage) []string {
	ep, cmd := s.Entrypoint, s.Command
	if ep == nil && image != nil {
		ep = image.Entrypoint
		if cmd == nil {
			cmd = image.Cmd
		}
	}
	return append(append([]string{}, ep...), cmd...)
}

// LoadCompose builds tools/composecheck (its own module) into dir and loads
// file with it, every profile enabled and variables at their defaults, as
// `docker compose config --format json` would.
func LoadCompose(root, dir, file string) (*Project, error) {
	bin := filepath.Join(dir, "composecheck")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(root, "tools", "composecheck")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building tools/composecheck: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-format", "json", "-profile", "*", file)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("composecheck %s: %v: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	var p Project
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		return nil, fmt.Errorf("composecheck %s: output: %w", file, err)
	}
	for name, s := range p.Services {
		s.Name = name
	}
	return &p, nil
}

// Stage returns the Dockerfile stage the service builds, nil when it
// builds none.
func (s *Service) Stage() (*Stage, error) {
	if s.Build == nil {
		return nil, nil
	}
	d, err := ParseDockerfile(s.Dockerfile())
	if err != nil {
		return nil, err
	}
	if s.Build.Target == "" {
		return d.Stages[len(d.Stages)-1], nil
	}
	st := d.Stage(s.Build.Target)
	if st == nil {
		return nil, fmt.Errorf("service %s: %s has no stage %q", s.Name, s.Dockerfile(), s.Build.Target)
	}
	return st, nil
}

// ContainerArgv returns what the service's container runs (Argv with its
// image's stage).
func (s *Service) ContainerArgv() ([]string, error) {
	st, err := s.Stage()
	if err != nil {
		return nil, err
	}
	return s.Argv(st), nil
}
