//go:build windows

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows/svc"
)

// serviceName is the name deploy/windows/install-service.ps1 registers.
const serviceName = "op25b-agent"

// runAsService runs the program under the service control manager when
// Windows started it as a service, and returns its exit status and true;
// otherwise it returns false at once. A service has no console: the
// output goes to op25b-agent.log in the default state directory.
func runAsService(args []string) (int, bool) {
	is, err := svc.IsWindowsService()
	if err != nil || !is {
		return 0, false
	}
	dir := defaultStateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exitFailed, true
	}
	log, err := os.OpenFile(filepath.Join(dir, "op25b-agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return exitFailed, true
	}
	defer log.Close()
	s := &service{args: args, log: log}
	if err := svc.Run(serviceName, s); err != nil {
		fmt.Fprintln(log, "op25b-agent: the service control manager:", err)
		return exitFailed, true
	}
	return s.code, true
}

// service runs `op25b-agent ARGS` (run, as the install script gives it)
// until Windows asks it to stop: as SIGTERM does elsewhere, the round in
// flight finishes and the spool drains for up to 10 s.
type service struct {
	args []string
	log  *os.File
	code int
}

func (s *service) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, s.args, s.log, s.log) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case r := <-requests:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				cancel()
			}
		case s.code = <-done:
			// A non-zero exit code tells the service control manager to
			// apply the recovery actions (restart) the script configures.
			return false, uint32(s.code)
		}
	}
}
