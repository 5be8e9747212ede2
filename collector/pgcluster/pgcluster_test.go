//go:build unix

package pgcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/testenv"
)

// prepare skips without server binaries and returns a context bounding
// the test and a directory for a cluster.
func prepare(t *testing.T) (context.Context, string) {
	t.Helper()
	testenv.Integration(t, "PostgreSQL server binaries")
	if _, err := FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, filepath.Join(t.TempDir(), "pg")
}

func TestStartStopRestart(t *testing.T) {
	ctx, dir := prepare(t)
	c, err := Start(ctx, dir, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	query := func() string {
		out, err := exec.Command(filepath.Join(c.bin, "psql"), c.URL(), "-tAc", "SELECT current_database()").CombinedOutput()
		if err != nil {
			return "error: " + string(out)
		}
		return string(out)
	}
	if got := query(); got != Database+"\n" {
		t.Errorf("query over %s = %q; want %q", c.URL(), got, Database)
	}
	// Start next to a running server attaches to it, and its Stop leaves
	// the server running.
	c2, err := Start(ctx, dir, Options{})
	if err != nil || c2.Port != c.Port {
		t.Fatalf("Start on a running cluster = port %d, %v; want to attach to port %d", c2.Port, err, c.Port)
	}
	c2.Stop()
	if got := query(); got != Database+"\n" {
		t.Errorf("query after the attached Stop = %q; want the server still running", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := query(); got == Database+"\n" {
		t.Errorf("query after Stop succeeded")
	}
	// A second Start on the same directory reuses the cluster.
	c3, err := Start(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Stop()
	c = c3
	if got := query(); got != Database+"\n" {
		t.Errorf("query after a second Start = %q", got)
	}
}

func TestConcurrentStartsShareOneCluster(t *testing.T) {
	ctx, dir := prepare(t)
	type res struct {
		c   *Cluster
		err error
	}
	out := make(chan res, 3)
	for i := 0; i < 3; i++ {
		go func() { c, err := Start(ctx, dir, Options{Settings: []string{"fsync=off"}}); out <- res{c, err} }()
	}
	var owner *Cluster
	port := 0
	for i := 0; i < 3; i++ {
		r := <-out
		if r.err != nil {
			t.Fatalf("concurrent Start: %v", r.err)
		}
		if port != 0 && r.c.Port != port {
			t.Errorf("concurrent Starts got ports %d and %d; want one cluster", port, r.c.Port)
		}
		port = r.c.Port
		if !r.c.attached {
			if owner != nil {
				t.Errorf("two Starts both own the cluster")
			}
			owner = r.c
		}
	}
	if owner == nil {
		t.Fatal("no Start owns the cluster")
	}
	if err := owner.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestServerOfADeadOwnerIsAdopted: a server whose owner went away without
// stopping it (the kernel dropped the owner's lock, as on SIGKILL) is
// taken over by the next Start, whose Stop stops it; while the owner
// lives, a Start only attaches. TestKilledCollectorsClusterIsStoppedByTheNext
// (collector/cmd/op25b-collector) does it with a real SIGKILL.
func TestServerOfADeadOwnerIsAdopted(t *testing.T) {
	ctx, dir := prepare(t)
	first, err := Start(ctx, dir, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	if first.Adopted || first.attached {
		t.Fatalf("the first Start: adopted %v, attached %v; want it to own the server it started", first.Adopted, first.attached)
	}
	if c, err := Start(ctx, dir, Options{}); err != nil || !c.attached || c.Adopted {
		t.Fatalf("Start next to a live owner: %v, attached %v, adopted %v; want attached", err, c.attached, c.Adopted)
	}
	first.owner.Close() // the owner dies
	first.owner, first.attached = nil, true
	next, err := Start(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !next.Adopted || next.attached || next.Port != first.Port {
		t.Fatalf("Start after the owner died: adopted %v, attached %v, port %d; want the server on port %d adopted",
			next.Adopted, next.attached, next.Port, first.Port)
	}
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := running(filepath.Join(dir, "data")); ok {
		t.Error("the server runs after the Stop of the process that adopted it")
	}
}

// TestSupervisorRestartsAKilledServer: the owner's supervisor starts a
// server whose postmaster was killed (SIGKILL) again, on the same port,
// with what was committed; a server stopped cleanly by someone else is
// left stopped.
func TestSupervisorRestartsAKilledServer(t *testing.T) {
	ctx, dir := prepare(t)
	c, err := Start(ctx, dir, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	psql := func(sql string) (string, error) {
		out, err := exec.Command(filepath.Join(c.bin, "psql"), c.URL(), "-tAc", sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	if c.crashed() {
		t.Fatal("a running server counts as crashed")
	}

	superviseCtx, stopSupervising := context.WithCancel(ctx)
	reports := make(chan error, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Supervise(superviseCtx, 20*time.Millisecond, func(err error) { reports <- err })
	}()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Failed attempts (the killed postmaster's backends still hold its
	// shared memory) are reported and retried; the first success ends it.
	for attempts := 1; ; attempts++ {
		select {
		case err := <-reports:
			if err != nil {
				t.Logf("attempt %d: %v", attempts, err)
				continue
			}
		case <-ctx.Done():
			t.Fatal("the killed server was not started again")
		}
		break
	}
	stopSupervising()
	<-done
	if got, err := psql("SELECT n FROM kept"); err != nil || got != "42" {
		t.Errorf("after the restart: %q, %v; want the committed row 42", got, err)
	}
	if port, ok := running(filepath.Join(dir, "data")); !ok || port != c.Port {
		t.Errorf("after the restart: running %v on port %d; want port %d", ok, port, c.Port)
	}

	// A clean stop by someone else removes postmaster.pid: not a crash.
	if out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(dir, "data"), "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v: %s", err, out)
	}
	if c.crashed() {
		t.Error("a server stopped with pg_ctl stop counts as crashed")
	}
	// And one that only attached never supervises.
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	attached, err := Start(ctx, dir, Options{})
	if err != nil || !attached.attached {
		t.Fatalf("Start next to the owner: %v, attached %v", err, attached != nil && attached.attached)
	}
	returned := make(chan struct{})
	go func() { attached.Supervise(ctx, time.Millisecond, func(error) {}); close(returned) }()
	select {
	case <-returned:
	case <-ctx.Done():
		t.Error("Supervise of an attached cluster did not return")
	}
}

// TestStandbyFollowsThePrimary: a standby made with Standby has what the
// primary committed before it was made and, after, what the primary
// commits next; it refuses writes.
func TestStandbyFollowsThePrimary(t *testing.T) {
	ctx, dir := prepare(t)
	primary, err := Start(ctx, dir, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop()
	psql := func(c *Cluster, sql string) (string, error) {
		out, err := exec.Command(filepath.Join(c.bin, "psql"), c.URL(), "-tAc", sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql(primary, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	standby, err := primary.Standby(ctx, filepath.Join(filepath.Dir(dir), "standby"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Stop()
	if standby.Port == primary.Port || standby.Dir == primary.Dir {
		t.Fatalf("the standby runs on port %d in %s, like the primary", standby.Port, standby.Dir)
	}
	if got, err := psql(standby, "SELECT pg_is_in_recovery(), (SELECT sum(n) FROM kept)"); err != nil || got != "t|1" {
		t.Errorf("on the standby, in recovery and the rows copied = %q, %v; want t|1", got, err)
	}
	if out, err := psql(standby, "INSERT INTO kept VALUES (100)"); err == nil || !strings.Contains(out, "read-only") {
		t.Errorf("a write on the standby: %q, %v; want it refused as read-only", out, err)
	}
	if out, err := psql(primary, "INSERT INTO kept VALUES (2)"); err != nil {
		t.Fatalf("insert: %v: %s", err, out)
	}
	for {
		got, err := psql(standby, "SELECT sum(n) FROM kept")
		if err == nil && got == "3" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the standby never replayed the primary's later insert (last: %q, %v)", got, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
