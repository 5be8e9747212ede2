package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/httpapi"
	"github.com/op25b/observatory/internal/ratelimit"
)

// The figures of issue 10's point 4, scaled down: 20,000 idle keep-alive
// connections from one address against a limit of 20,000 open files
// become idleConns against what this process has open plus fileMargin.
// The HTTP caps are the collector's defaults scaled alike (1,024 in all
// and 64 per address).
const (
	idleConns      = 1000
	fileMargin     = 150
	httpMax        = 64
	httpMaxPerAddr = 16
)

// TestIdleHTTPClientsLeaveUploadsAlone is issue 10's point 4: one address
// holding idle keep-alive connections to the HTTP listener took every
// descriptor the gRPC listener shares ("accept4: too many open files"),
// and agents could not upload. With the listener's caps the excess is
// refused at once and a new agent connection still uploads, whether the
// connections come from one address or from several (up to the cap in
// all, well below the open-file limit).
func TestIdleHTTPClientsLeaveUploadsAlone(t *testing.T) {
	if os.Getenv("OP25B_IDLE_TARGET") != "" {
		t.Skip("this process is the idle client")
	}
	for _, tc := range []struct{ sources, wantKept int }{{1, httpMaxPerAddr}, {8, httpMax}} {
		t.Run(fmt.Sprintf("%d addresses", tc.sources), func(t *testing.T) {
			c := collectortest.Start(t, api.Options{})
			e := &env{store: c.Store, auth: c.Auth, conn: c.Dial(t)}
			ctx, _ := e.enroll(t)

			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := ratelimit.NewListener(inner, httpMax, httpMaxPerAddr)
			srv := httpapi.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			// A new agent connection (an agent after a restart), which
			// connects at its first call.
			agent := c.Dial(t)
			limitFiles(t, openFiles(t)+fileMargin)
			client := idleClient(t, inner.Addr().String(), idleConns, tc.sources)
			// While the idle client holds its connections, the agent uploads.
			uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			resp, err := upload(t, uctx, agent, batch(10))
			if err != nil || len(resp.GetAckedResultIds()) != 10 {
				t.Errorf("upload while %d idle connections are open: %v, %v; want 10 acknowledged", idleConns, resp, err)
			}
			var kept, closed int
			client.line(t, "kept %d closed %d", &kept, &closed)
			t.Logf("%d idle connections from %d addresses: %d kept, %d closed by the server; listener %+v", idleConns, tc.sources, kept, closed, ln.Stats())
			if kept != tc.wantKept || closed != idleConns-tc.wantKept {
				t.Errorf("%d idle connections from %d addresses: %d kept; want %d, the rest refused", idleConns, tc.sources, kept, tc.wantKept)
			}
		})
	}
}

// TestIdleClientHelper is the idle client of the test above, in a process
// of its own, as an attacker would be: it opens OP25B_IDLE_CONNS
// keep-alive connections to OP25B_IDLE_TARGET from OP25B_IDLE_SOURCES
// loopback addresses (127.0.0.1 and up), with a request on each, and
// says so, then reads the answers and prints how many connections the
// server kept and closed, and holds them until it is killed.
func TestIdleClientHelper(t *testing.T) {
	target := os.Getenv("OP25B_IDLE_TARGET")
	if target == "" {
		t.Skip("only run by TestIdleHTTPClientsLeaveUploadsAlone")
	}
	n, _ := strconv.Atoi(os.Getenv("OP25B_IDLE_CONNS"))
	sources, _ := strconv.Atoi(os.Getenv("OP25B_IDLE_SOURCES"))
	var conns []net.Conn
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%sources))}}
		c, err := d.Dial("tcp", target)
		if err != nil {
			continue
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: collector\r\n\r\n")
	}
	fmt.Printf("opened %d\n", len(conns))
	kept := 0
	for _, c := range conns {
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			kept++
		}
	}
	fmt.Printf("kept %d closed %d\n", kept, n-kept)
	select {}
}

// helper is a running TestIdleClientHelper.
type helper struct{ lines *bufio.Scanner }

// idleClient starts TestIdleClientHelper against addr, with n connections
// from sources addresses, and returns once they are open; it is killed
// when the test ends.
func idleClient(t *testing.T, addr string, n, sources int) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientHelper$")
	cmd.Env = append(os.Environ(), "OP25B_IDLE_TARGET="+addr, "OP25B_IDLE_CONNS="+strconv.Itoa(n),
		"OP25B_IDLE_SOURCES="+strconv.Itoa(sources))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &helper{bufio.NewScanner(stdout)}
	var opened int
	h.line(t, "opened %d", &opened)
	if opened != n {
		t.Fatalf("the idle client opened %d connections of %d", opened, n)
	}
	return h
}

// line reads the helper's output up to a line that format scans.
func (h *helper) line(t *testing.T, format string, into ...any) {
	t.Helper()
	for h.lines.Scan() {
		if _, err := fmt.Sscanf(h.lines.Text(), format, into...); err == nil {
			return
		}
	}
	t.Fatalf("the idle client ended without %q: %v", format, h.lines.Err())
}

// openFiles is how many descriptors this process has open.
func openFiles(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(entries)
}

// limitFiles lowers this process's open-file limit to n until the test
// ends.
func limitFiles(t *testing.T, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil && !strings.Contains(err.Error(), "not permitted") {
			t.Error(err)
		}
	})
}
