// Command envdir runs a program with environment variables read from the
// files of a directory, like daemontools' envdir: file NAME sets NAME to
// its first line, trailing spaces and tabs removed; an empty file removes
// NAME. It then replaces itself with the program (exec), so signals and the
// exit status are the program's own.
//
//	envdir DIR PROGRAM [ARGS...]
//
// The images carry it for docker-compose.yml: the bootstrap service writes
// enrollment tokens into a volume at run time, and our programs read
// OP25B_ENROLL from the environment (internal/flagenv); the images have no
// shell to read a file into a variable. Exit status 111 when DIR or PROGRAM
// cannot be used, 100 on a usage error (as daemontools').
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: envdir DIR PROGRAM [ARGS...]")
		os.Exit(100)
	}
	env, err := apply(os.Environ(), os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "envdir:", err)
		os.Exit(111)
	}
	prog, err := exec.LookPath(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "envdir:", err)
		os.Exit(111)
	}
	err = syscall.Exec(prog, os.Args[2:], env)
	fmt.Fprintf(os.Stderr, "envdir: exec %s: %v\n", prog, err)
	os.Exit(111)
}

// apply returns env with the variables of dir's files set or removed.
// Files whose names start with a dot, and directories, are skipped.
func apply(env []string, dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	vars := map[string]*string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		if strings.Contains(name, "=") {
			return nil, fmt.Errorf("%s: a variable name cannot contain '='", filepath.Join(dir, name))
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			vars[name] = nil
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		line = strings.ReplaceAll(strings.TrimRight(line, " \t"), "\x00", "\n")
		vars[name] = &line
	}
	out := make([]string, 0, len(env)+len(vars))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range vars {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out, nil
}
