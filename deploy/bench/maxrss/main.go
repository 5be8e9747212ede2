// Command maxrss runs a command and prints its peak resident set size in
// KiB (getrusage ru_maxrss) on stderr's last line, so that benchmarks need
// no GNU time on the machine. Its exit status is the command's.
//
//	go run ./deploy/bench/maxrss -- CMD [ARGS...]
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: maxrss -- CMD [ARGS...]")
		os.Exit(2)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(1)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Fprintf(os.Stderr, "maxrss_kib %d\n", ru.Maxrss)
	os.Exit(cmd.ProcessState.ExitCode())
}
