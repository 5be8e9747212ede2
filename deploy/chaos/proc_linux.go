package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// restartDelay is how long the supervisor waits before starting a process
// that exited again, as systemd's Restart=on-failure would.
const restartDelay = time.Second

// proc is one supervised process of the run (the collector, a reference
// MTA, an agent): whenever it exits without stop having been called, it
// is started again after restartDelay, with the same command line, its
// output appended to the same log file.
type proc struct {
	name    string
	logPath string
	// nofile, when set, is the RLIMIT_NOFILE given to each start.
	nofile uint64

	mu      sync.Mutex
	argv    []string
	env     []string
	cmd     *exec.Cmd
	started time.Time
	starts  int
	exits   int
	stopped bool
	done    chan struct{} // closed when the current process exited
	quit    chan struct{} // closed by stop
}

func newProc(name, logPath string, argv []string) *proc {
	return &proc{name: name, logPath: logPath, argv: argv, quit: make(chan struct{})}
}

// setEnv replaces the extra environment of the next starts.
func (p *proc) setEnv(env []string) {
	p.mu.Lock()
	p.env = env
	p.mu.Unlock()
}

// start starts the process and supervises it until stop.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = false
	p.quit = make(chan struct{})
	return p.startLocked()
}

func (p *proc) startLocked() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "### chaos: start %d of %s at %s\n", p.starts+1, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", p.name, err)
	}
	if p.nofile > 0 {
		if err := setNofile(cmd.Process.Pid, p.nofile); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("chaos: RLIMIT_NOFILE of %s: %w", p.name, err)
		}
	}
	p.cmd, p.started = cmd, time.Now()
	p.starts++
	done := make(chan struct{})
	p.done = done
	quit := p.quit
	go func() {
		cmd.Wait()
		p.mu.Lock()
		p.exits++
		close(done)
		stopped := p.stopped
		p.mu.Unlock()
		if stopped {
			return
		}
		select {
		case <-quit:
			return
		case <-time.After(restartDelay):
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopped || p.done != done {
			return
		}
		if err := p.startLocked(); err != nil {
			// Retried by nobody: the run notices a process that is
			// gone (its phase's ingest stops) and says so.
			fmt.Fprintf(os.Stderr, "chaos: restarting %s: %v\n", p.name, err)
		}
	}()
	return nil
}

// pid is the process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// since is when the running process started and how many starts there
// were.
func (p *proc) since() (time.Time, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started, p.starts
}

// kill sends SIGKILL to the process alone (not its group: the collector's
// PostgreSQL survives it as it would a crash); the supervisor restarts it.
// It returns once the process is gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// restart stops the process as stop does, then starts it again.
func (p *proc) restart(grace time.Duration) error {
	p.stop(grace)
	return p.start()
}

// stop ends supervision, sends SIGTERM and, after grace, SIGKILL to the
// process group.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.quit)
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if !isClosed(done) {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			signalGroup(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// waitStarted waits until the process has been started more than n times
// and is running.
func (p *proc) waitStarted(ctx context.Context, n int) error {
	for {
		if _, starts := p.since(); starts > n && p.pid() != 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
