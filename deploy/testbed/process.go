package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 2 * time.Second

// child is a long-running process of the testbed (the reference MTA, a
// middlebox), started in its own process group.
type child struct {
	// grace is how long stop waits after SIGTERM (at least stopGrace): the
	// collector stops its PostgreSQL before it exits.
	grace time.Duration
	name  string
	cmd   *exec.Cmd
	out   *tail // stdout and stderr
	done  chan struct{}
	err   error // valid after done is closed
	// stopped is set once stop was called: its exit is no failure.
	stopped atomic.Bool
}

func startChild(name string, log *slog.Logger, argv ...string) (*child, error) {
	c := &child{
		name: name,
		cmd:  exec.Command(argv[0], argv[1:]...),
		out:  newTail(32 << 10),
		done: make(chan struct{}),
	}
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	c.cmd.SysProcAttr = childAttr()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testbed: start %s: %w", name, err)
	}
	log.Debug("started", "process", name, "pid", c.cmd.Process.Pid, "argv", argv)
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the child is gone.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the child's process group: SIGTERM, then SIGKILL after
// stopGrace. Signalling the group also reaches anything the child started.
func (c *child) stop() {
	c.stopped.Store(true)
	pid := c.cmd.Process.Pid
	_ = signalGroup(pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(max(c.grace, stopGrace)):
	}
	// Also when the leader is gone: a descendant may survive it.
	_ = signalGroup(pid, syscall.SIGKILL)
	<-c.done
}

// waitFor polls ready until it returns true, the child exits, ctx ends or
// timeout passes. The child's output is in the error, because a child that
// never gets ready almost always says why.
func (c *child) waitFor(ctx context.Context, timeout time.Duration, what string, ready func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-c.done:
			return fmt.Errorf("testbed: %s exited before %s (%v): %s", c.name, what, c.err, c.out.String())
		case <-ctx.Done():
			return fmt.Errorf("testbed: %s: waiting for %s: %w: %s", c.name, what, ctx.Err(), c.out.String())
		case <-tick.C:
		}
	}
	return nil
}

// tail keeps the last max bytes written to it: the end of a log is where a
// failing process explains itself.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
