package pgcluster

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/testenv"
)

func TestStartStopRestart(t *testing.T) {
	if _, err := FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
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
	if _, err := FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
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
	if _, err := FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
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
