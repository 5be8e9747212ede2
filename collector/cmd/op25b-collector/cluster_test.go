package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/pgcluster"
	"github.com/op25b/observatory/internal/testenv"
)

// runAsCollector set to 1 makes the test binary run main() (TestMain).
const runAsCollector = "OP25B_TEST_RUN_COLLECTOR"

// TestKilledCollectorsClusterIsStoppedByTheNext: a collector killed with
// SIGKILL leaves its embedded PostgreSQL running; the next collector on
// the same data directory takes that server over and stops it when it is
// itself stopped cleanly, so no server is left without an owner.
func TestKilledCollectorsClusterIsStoppedByTheNext(t *testing.T) {
	testenv.Integration(t, "PostgreSQL")
	if _, err := pgcluster.FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	dataDir := t.TempDir()
	pgData := filepath.Join(dataDir, "postgres", "data")
	t.Cleanup(func() {
		// Whatever the outcome, no server outlives the test.
		if pid, ok := postmaster(pgData); ok {
			syscall.Kill(pid, syscall.SIGQUIT)
		}
	})

	first := startCollector(t, dataDir)
	pid, ok := postmaster(pgData)
	if !ok {
		t.Fatal("the collector runs no embedded PostgreSQL")
	}
	first.stop(syscall.SIGKILL)
	if p, ok := postmaster(pgData); !ok || p != pid {
		t.Fatalf("PostgreSQL (pid %d) died with its collector; the test proves nothing", pid)
	}

	second := startCollector(t, dataDir)
	if p, ok := postmaster(pgData); !ok || p != pid {
		t.Fatalf("after the second collector started, the server is pid %d (running %v); want it to take over pid %d", p, ok, pid)
	}
	if err := second.stop(syscall.SIGTERM); err != nil {
		t.Errorf("the second collector, stopped with SIGTERM: %v; want a clean exit", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, ok := postmaster(pgData); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL (pid %d) still runs a minute after the collector that used it stopped cleanly; want it stopped", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The data directory is usable again: a third collector starts it
	// anew.
	third := startCollector(t, dataDir)
	if err := third.stop(syscall.SIGTERM); err != nil {
		t.Errorf("the third collector, stopped with SIGTERM: %v", err)
	}
	if pid, ok := postmaster(pgData); ok {
		t.Errorf("PostgreSQL (pid %d) still runs after the third collector stopped", pid)
	}
}

// collector is a collector process.
type collector struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // how it exited, once exited is closed
}

// stop signals the collector and returns how it exited.
func (c *collector) stop(sig syscall.Signal) error {
	c.cmd.Process.Signal(sig)
	<-c.exited
	return c.err
}

// startCollector starts this test binary as a collector with its
// embedded PostgreSQL under dataDir and returns once /healthz answers.
func startCollector(t *testing.T, dataDir string) *collector {
	t.Helper()
	c, _ := startCollectorWith(t, dataDir, nil)
	return c
}

// startCollectorWith starts this test binary as a collector under dataDir
// with extra flags, returns once /healthz answers, and returns the
// address of its HTTP listener. Its environment has no DATABASE_URL and
// no OP25B_ variables: the flags say what it does.
func startCollectorWith(t *testing.T, dataDir string, flags []string) (*collector, string) {
	t.Helper()
	httpAddr := freeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--data-dir", dataDir, "--listen", freeAddr(t),
		"--http-listen", httpAddr, "--log-level", "warn"}, flags...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "OP25B_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runAsCollector+"=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &collector{cmd: cmd, exited: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() { c.stop(syscall.SIGKILL) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, httpAddr
			}
		}
		select {
		case <-c.exited:
			t.Fatalf("the collector exited before it was ready: %v", c.err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not answer /healthz within 2 minutes (last: %v)", err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// postmaster returns the pid of the server that runs on data, from its
// postmaster.pid, which a clean shutdown removes.
func postmaster(data string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return pid, true
}
