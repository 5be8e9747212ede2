// Package composerun runs the set-up of docker-compose.yml without Docker:
// its bootstrap service's script with the compose file's environment, the
// collector with the compose file's command against a real PostgreSQL,
// its health check, publish-ca, and a reference MTA and an agent
// enrolling with the tokens the script made, each seeing its volumes at
// the paths the compose file mounts them.
package composerun

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/deploy/deploytest"
	"github.com/op25b/observatory/internal/testenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// world is the compose file's services on this machine: named volumes are
// directories, and each service gets a view, a directory where its mount
// targets are symbolic links to its volumes and bind-mounted files.
type world struct {
	t       *testing.T
	root    string // the repository
	dir     string
	project *deploytest.Project
	progs   *deploytest.Programs
	dbURL   string
}

func (w *world) service(name string) *deploytest.Service {
	s := w.project.Services[name]
	if s == nil {
		w.t.Fatalf("docker-compose.yml has no service %s", name)
	}
	return s
}

// view makes the service's view and returns its directory.
func (w *world) view(s *deploytest.Service) string {
	w.t.Helper()
	v := filepath.Join(w.dir, "views", s.Name)
	for _, m := range s.Volumes {
		src := m.Source
		if m.Type == "volume" {
			src = filepath.Join(w.dir, "volumes", m.Source)
			if err := os.MkdirAll(src, 0o755); err != nil {
				w.t.Fatal(err)
			}
		}
		link := filepath.Join(v, m.Target)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.Symlink(src, link); err != nil && !os.IsExist(err) {
			w.t.Fatal(err)
		}
	}
	return v
}

// mapPath returns where a path inside the service's container is here: in
// one of its mounts, or unchanged.
func (w *world) mapPath(s *deploytest.Service, p string) string {
	best := ""
	for _, m := range s.Volumes {
		if (p == m.Target || strings.HasPrefix(p, m.Target+"/")) && len(m.Target) > len(best) {
			best = m.Target
		}
	}
	if best == "" {
		return p
	}
	return filepath.Join(w.view(s), p)
}

// mounted maps p, a directory the service writes, which must be in one of
// its volumes: elsewhere it would be lost with the container (and here, it
// would be written outside the test's directory).
func (w *world) mounted(s *deploytest.Service, p string) string {
	w.t.Helper()
	m := w.mapPath(s, p)
	if p == "" || m == p {
		w.t.Fatalf("service %s: %q is in none of its volumes", s.Name, p)
	}
	return m
}

// mapArg maps the path in a --flag=PATH or PATH argument.
func (w *world) mapArg(s *deploytest.Service, a string) string {
	if name, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "-") {
		return name + "=" + w.mapPath(s, v)
	}
	return w.mapPath(s, a)
}

// env returns the service's environment, paths mapped, DATABASE_URL
// pointing at the test's database, our programs first on PATH.
func (w *world) env(s *deploytest.Service, extra ...string) []string {
	env := []string{"PATH=" + w.progs.Dir + ":" + os.Getenv("PATH"), "HOME=" + w.dir}
	for k, v := range s.Environment {
		val := ""
		if v != nil {
			val = w.mapPath(s, *v)
		}
		if k == "DATABASE_URL" {
			val = w.dbURL
		}
		env = append(env, k+"="+val)
	}
	return append(env, extra...)
}

// process is a started program whose output is kept for failures.
type process struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (w *world) start(name string, env, argv []string) *process {
	w.t.Helper()
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), out: &syncBuffer{}}
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr, p.cmd.Dir = env, p.out, p.out, w.dir
	if err := p.cmd.Start(); err != nil {
		w.t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	w.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second): // the agent would finish its round
			p.cmd.Process.Kill()
			<-done
		}
		if w.t.Failed() {
			w.t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// run runs a one-shot command and returns its output.
func (w *world) run(name string, env, argv []string) string {
	w.t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, w.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("%s: %s: %v\n%s", name, strings.Join(argv, " "), err, out)
	}
	return string(out)
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

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestComposeSetUp(t *testing.T) {
	root, err := deploytest.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := &world{t: t, root: root, dir: dir, dbURL: storetest.URL(t)}
	if w.progs, err = deploytest.BuildPrograms(root, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	if w.project, err = deploytest.LoadCompose(root, dir, filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "deploy", "docker", "bootstrap.sh")
	bootstrap := func(name string) string {
		s := w.service(name)
		return w.run(name, w.env(s, "BOOTSTRAP_ROOT="+w.view(s)), append([]string{"sh", script}, s.Command...))
	}

	// bootstrap: identity documents and tokens.
	t.Logf("%s bootstrap:\n%s", time.Now().Format(time.StampMilli), bootstrap("bootstrap"))
	boot := w.service("bootstrap")
	public := w.mapPath(boot, "/etc/op25b")
	secrets := w.mapPath(boot, "/run/op25b")
	docs := map[string]string{}
	for _, spec := range strings.Fields(boot.Env("BOOTSTRAP_REFMTAS")) {
		name, addr, _ := strings.Cut(spec, "=")
		docs[name] = readFile(t, filepath.Join(public, name+".json"))
		var doc op25bv1.ReferenceMTA
		if err := protojson.Unmarshal([]byte(docs[name]), &doc); err != nil {
			t.Fatalf("%s.json: %v", name, err)
		}
		if !slices.Equal(doc.Addresses, []string{addr}) || doc.Hostname != name || len(doc.PublicKey) != 32 {
			t.Errorf("%s.json: addresses %q, hostname %q; want [%s] and %s", name, doc.Addresses, doc.Hostname, addr, name)
		}
	}
	tokenID := map[string]string{}
	for _, kind := range []string{"agent", "refmta"} {
		if strings.TrimSpace(readFile(t, filepath.Join(secrets, kind, "OP25B_ENROLL"))) == "" {
			t.Fatalf("no %s token", kind)
		}
		tokenID[kind] = strings.TrimSpace(readFile(t, filepath.Join(secrets, kind, ".id")))
	}

	// collector: the compose command, listening on free ports here.
	col := w.service("collector")
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	argv := []string{w.progs.Path("op25b-collector")}
	var composeHTTP string
	for _, a := range col.Command {
		switch {
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=" + grpcAddr
		case strings.HasPrefix(a, "--http-listen="):
			composeHTTP = strings.TrimPrefix(a, "--http-listen=")
			a = "--http-listen=" + httpAddr
		default:
			a = w.mapArg(col, a)
		}
		argv = append(argv, a)
	}
	// The default --data-dir must be a volume: the local CA lives there
	// and publish-ca reads it from the volume.
	const dataDir = "/var/lib/op25b-collector"
	w.start("collector", w.env(col), append(argv, "--data-dir="+w.mounted(col, dataDir)))

	health := slices.Clone(col.Healthcheck.Test[1:])
	health[0] = w.progs.Path(filepath.Base(health[0]))
	for i, a := range health {
		health[i] = strings.Replace(a, "127.0.0.1:"+port(composeHTTP), httpAddr, 1)
	}
	testenv.WaitFor(t, "the collector's health check", 60*time.Second, func() bool {
		return exec.Command(health[0], health[1:]...).Run() == nil
	})

	// publish-ca, and the certificate covers the name agents dial.
	bootstrap("publish-ca")
	ca := readFile(t, filepath.Join(public, "ca.pem"))
	if ca != readFile(t, filepath.Join(w.mapPath(col, dataDir), "tls", "ca.pem")) {
		t.Errorf("publish-ca: ca.pem differs from the collector's")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca))
	conn, err := tls.Dial("tcp", grpcAddr, &tls.Config{RootCAs: pool, ServerName: "collector", NextProtos: []string{"h2"}})
	if err != nil {
		t.Errorf("TLS to the collector as \"collector\" with the published CA: %v", err)
	} else {
		conn.Close()
	}

	// A reference MTA and an agent enroll with the bootstrap's tokens, read
	// from the secrets volume (--enroll-file) as in their containers; only
	// where they listen and the collector's address differ from the
	// compose file.
	refmta := w.service("refmta-1")
	ports := []string{port(freeAddr(t)), port(freeAddr(t)), port(freeAddr(t))}
	refArgv := w.mapArgv(refmta, w.containerArgv(refmta),
		"--listen=127.0.0.1", "--ports="+strings.Join(ports, ","), "--control-port="+port(freeAddr(t)),
		"--http-listen="+freeAddr(t), "--collector="+grpcAddr)
	refState := w.mounted(refmta, refmta.Env("OP25B_STATE_DIR"))
	ref := w.start("refmta-1", w.env(refmta), refArgv)

	agent := w.service("agent-op25b")
	agState := w.mounted(agent, "/var/lib/op25b-agent") // the default --state-dir
	agArgv := w.mapArgv(agent, w.containerArgv(agent), "--collector="+grpcAddr, "--state-dir="+agState)
	ag := w.start("agent-op25b", w.env(agent), agArgv)

	for what, cred := range map[string]string{"refmta-1": refState, "agent-op25b": agState} {
		testenv.WaitFor(t, what+" to enroll", 60*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(cred, "credential"))
			return err == nil
		})
	}
	// Enrolled: stop the agent before its first round would probe the
	// compose file's addresses from this machine.
	ag.cmd.Process.Kill()
	// The ports differ here; the identity (key, id, addresses, name) must not.
	var served, made op25bv1.ReferenceMTA
	if err := protojson.Unmarshal([]byte(readFile(t, filepath.Join(refState, "identity.json"))), &served); err != nil {
		t.Fatal(err)
	}
	protojson.Unmarshal([]byte(docs["refmta-1"]), &made)
	if served.Id != made.Id || !bytes.Equal(served.PublicKey, made.PublicKey) || !slices.Equal(served.Addresses, made.Addresses) || served.Hostname != made.Hostname {
		t.Errorf("refmta-1 serves as %s %q %s, bootstrap published %s %q %s", served.Id, served.Addresses, served.Hostname, made.Id, made.Addresses, made.Hostname)
	}
	testenv.WaitFor(t, "refmta-1 to upload", 10*time.Second, func() bool { return strings.Contains(ref.out.String(), "uploading sightings") })
	if strings.Contains(ref.out.String(), "enrolled under another id") {
		t.Errorf("refmta-1 enrolled under another id than its identity document's")
	}

	// token list: one use of each token; a second bootstrap keeps them.
	list := w.run("token list", w.env(boot), []string{w.progs.Path("op25b-collector"), "token", "list"})
	for kind, uses := range map[string]string{"agent": "1/" + boot.Env("BOOTSTRAP_AGENT_USES"), "refmta": fmt.Sprintf("1/%d", len(docs))} {
		if !strings.Contains(list, tokenID[kind]) || !regexpLine(list, tokenID[kind], uses) {
			t.Errorf("token list: want %s token %s used %s:\n%s", kind, tokenID[kind], uses, list)
		}
	}
	bootstrap("bootstrap")
	for kind, id := range tokenID {
		if got := strings.TrimSpace(readFile(t, filepath.Join(secrets, kind, ".id"))); got != id {
			t.Errorf("a second bootstrap replaced the %s token %s with %s", kind, id, got)
		}
	}
	if got := readFile(t, filepath.Join(public, "refmta-1.json")); got != docs["refmta-1"] {
		t.Errorf("a second bootstrap changed refmta-1.json")
	}
}

func (w *world) containerArgv(s *deploytest.Service) []string {
	w.t.Helper()
	argv, err := s.ContainerArgv()
	if err != nil {
		w.t.Fatal(err)
	}
	return argv
}

// regexpLine reports whether a line of text holds both words.
func regexpLine(text, a, b string) bool {
	for line := range strings.Lines(text) {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}

// mapArgv maps a service's container argv (PROGRAM ARGS) to this machine
// and appends extra flags, which win over the environment.
func (w *world) mapArgv(s *deploytest.Service, argv []string, extra ...string) []string {
	out := make([]string, 0, len(argv)+len(extra))
	for i, a := range argv {
		switch {
		case i == 0:
			a = w.progs.Path(filepath.Base(a))
		default:
			a = w.mapArg(s, a)
		}
		out = append(out, a)
	}
	return append(out, extra...)
}
