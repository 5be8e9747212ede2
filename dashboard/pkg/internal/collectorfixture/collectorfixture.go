// Package collectorfixture gives the plugin's tests real collectors: real
// PostgreSQL, the collector's real gRPC services over TLS, the dataset over
// the seeded world of the collector's own tests, results stored while a
// test runs.
//
// The plugin is a module of its own that does not require the root module
// (so that it builds from dashboard/ alone), and it has its own copy of the
// generated protobuf code: a binary that linked the collector as well would
// register the same proto files twice, which protobuf refuses with a
// panic. So the collectors run out of process: the first test that needs
// one builds the repository's fixture program
// (collector/collectortest/cmd/op25b-fixture, found at .. from dashboard/)
// with the go command and starts it, and speaks its protocol
// (internal/fixturewire, a copy of the fixture's own package). Where the
// repository, the go command or PostgreSQL is absent (dashboard/ copied
// alone), the tests that need a collector skip, or fail under
// OP25B_REQUIRE_ALL=1 (internal/testenv).
//
// A test package that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { collectorfixture.Main(m) }
package collectorfixture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/op25b/observatory/dashboard/pkg/internal/fixturewire"
	"github.com/op25b/observatory/dashboard/pkg/internal/testenv"
)

// fixturePackage is the fixture program, relative to the repository root.
const fixturePackage = "./collector/collectortest/cmd/op25b-fixture"

// The protocol's types that tests use.
type (
	World   = fixturewire.World
	Options = fixturewire.Options
	Result  = fixturewire.Result
	Change  = fixturewire.Change
)

// Collector is a running collector.
type Collector struct {
	fixturewire.Collector
}

// fixture is the test binary's running op25b-fixture.
var fixture struct {
	once sync.Once
	// why is why there is none.
	why string
	err error

	dir   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	world World
	// mu serializes the requests.
	mu sync.Mutex
	// seeded is the collector of the seeded world, shared: tests only read
	// it.
	seeded   *Collector
	seededMu sync.Mutex
}

// Main runs the tests, then stops the fixture if a test started it.
func Main(m *testing.M) {
	code := m.Run()
	stop()
	os.Exit(code)
}

// Seeded returns the test binary's collector of the seeded world, started
// on first use, and the world's facts. Tests must not write to it.
func Seeded(t testing.TB) (*Collector, World) {
	t.Helper()
	fixture.seededMu.Lock()
	defer fixture.seededMu.Unlock()
	if fixture.seeded == nil {
		fixture.seeded = Start(t, Options{Seeded: true})
	}
	return fixture.seeded, fixture.world
}

// Start starts a collector over a fresh database; it stops with the
// fixture, when the tests end.
func Start(t testing.TB, o Options) *Collector {
	t.Helper()
	r := call(t, fixturewire.Request{Start: &o})
	if r.Unavailable != "" {
		testenv.Unavailable(t, r.Unavailable)
	}
	if r.Collector == nil {
		t.Fatalf("op25b-fixture: start answered no collector")
	}
	return &Collector{*r.Collector}
}

// Insert stores rs in c's database.
func (c *Collector) Insert(t testing.TB, rs ...Result) {
	t.Helper()
	r := call(t, fixturewire.Request{Insert: &fixturewire.Insert{ID: c.ID, Results: rs}})
	if r.Inserted == nil || *r.Inserted != int64(len(rs)) {
		t.Fatalf("op25b-fixture: inserted %v of %d results", r.Inserted, len(rs))
	}
}

// Change logs ch in c's database and notifies c of it.
func (c *Collector) Change(t testing.TB, ch Change) {
	t.Helper()
	ch.ID = c.ID
	call(t, fixturewire.Request{Change: &ch})
}

// Held is how many stream subscribers c holds (c streams).
func (c *Collector) Held(t testing.TB) int {
	t.Helper()
	r := call(t, fixturewire.Request{Held: &fixturewire.Ref{ID: c.ID}})
	if r.Held == nil {
		t.Fatal("op25b-fixture: held answered no count")
	}
	return *r.Held
}

// WaitHeld waits until c holds n stream subscribers, for 15 seconds at
// most.
func (c *Collector) WaitHeld(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for c.Held(t) != n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the collector to hold %d stream subscribers; it holds %d", n, c.Held(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call sends one request and returns its answer.
func call(t testing.TB, req fixturewire.Request) fixturewire.Response {
	t.Helper()
	running(t)
	line, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	fixture.mu.Lock()
	defer fixture.mu.Unlock()
	if _, err := fixture.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("op25b-fixture: %v (its log is in the test's output)", err)
	}
	if !fixture.out.Scan() {
		t.Fatalf("op25b-fixture: no answer to %s: %v (its log is in the test's output)", line, fixture.out.Err())
	}
	var r fixturewire.Response
	if err := json.Unmarshal(fixture.out.Bytes(), &r); err != nil {
		t.Fatalf("op25b-fixture: answer %q: %v", fixture.out.Bytes(), err)
	}
	if r.Error != "" {
		t.Fatalf("op25b-fixture: %s: %s", line, r.Error)
	}
	return r
}

// running starts the fixture on first use, or stops t when it cannot run.
func running(t testing.TB) {
	t.Helper()
	testenv.Integration(t, "a real collector and PostgreSQL")
	fixture.once.Do(func() { fixture.why, fixture.err = start() })
	if fixture.why != "" {
		testenv.Unavailable(t, fixture.why)
	}
	if fixture.err != nil {
		t.Fatalf("op25b-fixture: %v", fixture.err)
	}
}

// start builds the fixture from the repository around dashboard/ and
// starts it. why says why it cannot; err is a failure.
func start() (why string, err error) {
	root, why := repository()
	if why != "" {
		return why, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "no go command to build the collector fixture " + fixturePackage + ": " + err.Error(), nil
	}
	if fixture.dir, err = os.MkdirTemp("", "op25b-plugin-fixture-"); err != nil {
		return "", err
	}
	bin := filepath.Join(fixture.dir, "op25b-fixture")
	build := exec.Command(gobin, "build", "-o", bin, fixturePackage)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %v\n%s", fixturePackage, root, err, out)
	}
	fixture.cmd = exec.Command(bin)
	fixture.cmd.Stderr = os.Stderr
	if fixture.stdin, err = fixture.cmd.StdinPipe(); err != nil {
		return "", err
	}
	stdout, err := fixture.cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := fixture.cmd.Start(); err != nil {
		return "", err
	}
	fixture.out = bufio.NewScanner(stdout)
	fixture.out.Buffer(nil, 1<<20)
	if !fixture.out.Scan() {
		return "", fmt.Errorf("exited before it greeted: %v", fixture.out.Err())
	}
	var hello fixturewire.Response
	if err := json.Unmarshal(fixture.out.Bytes(), &hello); err != nil || hello.World == nil {
		return "", fmt.Errorf("greeting %q: want the seeded world (%v)", fixture.out.Bytes(), err)
	}
	fixture.world = *hello.World
	return "", nil
}

// repository finds the repository root around the dashboard module that
// holds the working directory, or says why there is none.
func repository() (root, why string) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err.Error()
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(mod) == "github.com/op25b/observatory/dashboard" {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "the working directory is not inside the dashboard module"
		}
		dir = parent
	}
	root = filepath.Dir(dir)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || modulePath(mod) != "github.com/op25b/observatory" {
		return "", "no OP25B Observatory repository around " + dir + " (the plugin copied alone): the tests that need a real collector build it from " +
			fixturePackage + " in the repository"
	}
	return root, ""
}

// modulePath is the module path that the go.mod file mod declares.
func modulePath(mod []byte) string {
	for line := range bytes.Lines(mod) {
		if rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("module ")); ok {
			return string(bytes.Trim(bytes.TrimSpace(rest), `"`))
		}
	}
	return ""
}

// stop closes the fixture's stdin, which stops it and what it started,
// and waits for it.
func stop() {
	if fixture.cmd != nil {
		fixture.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- fixture.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, "op25b-fixture:", err)
			}
		case <-time.After(time.Minute):
			fixture.cmd.Process.Kill()
			<-done
			fmt.Fprintln(os.Stderr, "op25b-fixture: did not stop within a minute of its stdin closing; killed")
		}
	}
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
}
