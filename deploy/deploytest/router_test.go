package deploytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/op25b/observatory/internal/testenv"
)

// TestRouterRules loads each access network's rules, with the router
// image's own entrypoint, into a fresh network namespace, as the router
// container does, and probes the ports an agent probes: in the open
// network every port answers; in the OP25B network a connection to port 25
// is never answered while 587, 465 and the control port 443 are. The
// image's health check must pass once the rules are in.
func TestRouterRules(t *testing.T) {
	testenv.NeedRoot(t)
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" is not installed (make testdeps installs nftables and iproute2)")
		}
	}
	p, _ := compose(t)
	want := map[string]map[int]bool{ // rules file -> port -> answers
		"open.nft":  {25: true, 587: true, 465: true, 443: true},
		"op25b.nft": {25: false, 587: true, 465: true, 443: true},
	}
	tested := 0
	for _, s := range p.Services {
		st := stageOf(t, s)
		if st == nil || len(st.Healthcheck) == 0 || !strings.Contains(strings.Join(st.Entrypoint, " "), "op25b-router") {
			continue
		}
		var rules string
		for _, m := range s.Volumes {
			if m.Type == "bind" && strings.HasSuffix(m.Source, ".nft") {
				rules = m.Source
			}
		}
		ports, ok := want[filepath.Base(rules)]
		if !ok {
			t.Errorf("service %s: rules %q: the test knows no behaviour for them", s.Name, rules)
			continue
		}
		tested++
		t.Run(s.Name, func(t *testing.T) {
			entrypoint := filepath.Join(filepath.Dir(s.Dockerfile()), "entrypoint.sh")
			got, err := inNetns(func() (map[int]bool, error) {
				return probeRules(entrypoint, rules, st.Healthcheck, ports)
			})
			if err != nil {
				t.Fatal(err)
			}
			for port, answers := range ports {
				if got[port] != answers {
					t.Errorf("%s: port %d answers: %v; want %v", filepath.Base(rules), port, got[port], answers)
				}
			}
		})
	}
	if tested < 2 {
		t.Errorf("%d routers tested; want the open and the OP25B one", tested)
	}
}

// inNetns runs f on a thread of its own in a new network namespace; the
// thread is discarded afterwards, the namespace with it.
func inNetns[T any](f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the goroutine's exit ends the thread, and the
		// namespace is not reused by other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			var zero T
			ch <- result{zero, fmt.Errorf("unshare: %w", err)}
			return
		}
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// probeRules, in the namespace of the calling thread, brings up loopback,
// runs the router's entrypoint with the rules, runs the health check,
// then listens on the ports and reports which a connection reaches.
func probeRules(entrypoint, rules string, health []string, ports map[int]bool) (map[int]bool, error) {
	run := func(env []string, name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run(nil, "ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if err := run([]string{"ROUTER_RULES=" + rules}, "sh", entrypoint, "true"); err != nil {
		return nil, err
	}
	// Loading twice must work: the container reloads them on restart.
	if err := run([]string{"ROUTER_RULES=" + rules}, "sh", entrypoint, "true"); err != nil {
		return nil, fmt.Errorf("second load: %w", err)
	}
	if err := run(nil, health[0], health[1:]...); err != nil {
		return nil, fmt.Errorf("health check: %w", err)
	}
	got := map[int]bool{}
	for port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 1500*time.Millisecond)
		ln.Close()
		switch {
		case err == nil:
			c.Close()
			got[port] = true
		case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
			got[port] = false
		default:
			return nil, fmt.Errorf("port %d: %v (want an answer or a timeout)", port, err)
		}
	}
	return got, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
