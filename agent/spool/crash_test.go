package spool

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/testenv"
)

// The environment that turns TestHelperAppender into the crash test's
// child process.
const (
	helperDirEnv   = "OP25B_SPOOL_HELPER_DIR"
	helperStartEnv = "OP25B_SPOOL_HELPER_START"
)

// crashOpts gives small segments, so that the children roll segments and
// the parent deletes them while records keep coming.
var crashOpts = Options{SegmentBytes: 1 << 10}

// TestHelperAppender is not a test: run by TestCrash as a child process,
// it appends records r<start>, r<start+1>, ... until it is killed, and
// prints each id only after Append returned it durable.
func TestHelperAppender(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		return
	}
	start, err := strconv.Atoi(os.Getenv(helperStartEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(dir, crashOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("ready") // os.Stdout is unbuffered: one write per line
	for n := start; ; n++ {
		id := "r" + strconv.Itoa(n)
		if err := s.Append(id, payloadOf(id)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println(id)
	}
}

// TestCrash kills an appending process with SIGKILL 100 times in a row on
// one directory, acknowledging records in between, and checks after each
// kill that the spool opens, that every record reported durable is there
// or was acknowledged, that at most the record in flight is missing, that
// nothing appears twice and nothing acknowledged comes back. Every tenth
// round it also appends half a frame to the newest segment, as a torn
// write would leave it, and checks that exactly that is cut.
func TestCrash(t *testing.T) {
	testenv.Long(t, "kills a writer process 100 times")
	const kills = 100
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	dir := t.TempDir()

	durable := make(map[int]bool) // reported by a child, not acknowledged
	acked := make(map[int]bool)
	next := 0 // the number of the first record of the next child
	var appended, inFlightKept, inFlightLost, killedTorn, injected, ackedTotal int
	for round := range kills {
		reported := runAppender(t, dir, next, time.Duration(5+rng.IntN(46))*time.Millisecond)
		appended += len(reported)
		for _, n := range reported {
			durable[n] = true
		}
		inFlight := next + len(reported) // the record the kill interrupted
		if len(reported) > 0 && reported[len(reported)-1] != inFlight-1 {
			t.Fatalf("round %d: child reported %v from %d", round, reported, next)
		}

		inject := round%10 == 9 && injectTornFrame(t, dir)
		if inject {
			injected++
		}
		s, err := Open(dir, crashOpts)
		if err != nil {
			t.Fatalf("round %d: Open() = %v", round, err)
		}
		st := s.Stats()
		corrupt := st.CorruptRecords
		if inject {
			corrupt-- // the injected torn frame, cut with the kill's if any
		}
		switch {
		case corrupt == 1 && !inject:
			killedTorn++
		case corrupt != 0:
			t.Fatalf("round %d: Stats().CorruptRecords = %d (torn frame injected: %v); want at most one torn tail", round, st.CorruptRecords, inject)
		}

		recs := s.Pending(st.Pending + 1)
		if len(recs) != st.Pending {
			t.Fatalf("round %d: Pending() returned %d records; Stats().Pending = %d", round, len(recs), st.Pending)
		}
		present := make(map[int]bool)
		last := -1
		for _, r := range recs {
			n, err := strconv.Atoi(strings.TrimPrefix(r.ID, "r"))
			switch {
			case err != nil || !strings.HasPrefix(r.ID, "r"):
				t.Fatalf("round %d: foreign record %q", round, r.ID)
			case n <= last:
				t.Fatalf("round %d: %s after r%d: duplicate or out of order", round, r.ID, last)
			case acked[n]:
				t.Fatalf("round %d: acknowledged %s delivered again", round, r.ID)
			case !durable[n] && n != inFlight:
				t.Fatalf("round %d: %s never appended (in flight: r%d)", round, r.ID, inFlight)
			case string(r.Payload) != string(payloadOf(r.ID)):
				t.Fatalf("round %d: payload of %s = %q", round, r.ID, r.Payload)
			}
			last = n
			present[n] = true
		}
		for n := range durable {
			if !present[n] {
				t.Fatalf("round %d: r%d was reported durable and is gone", round, n)
			}
		}
		if present[inFlight] {
			inFlightKept++
			durable[inFlight] = true // on disk now, so it must stay
			next = inFlight + 1
		} else {
			inFlightLost++
			next = inFlight
		}

		// Acknowledge a random prefix and a few others, as an uploader
		// whose acks arrive out of order would.
		var ack []string
		prefix := rng.IntN(len(recs) + 1)
		for i, r := range recs {
			if i < prefix || rng.IntN(4) == 0 {
				ack = append(ack, r.ID)
				n, _ := strconv.Atoi(r.ID[1:])
				delete(durable, n)
				acked[n] = true
			}
		}
		if err := s.Ack(ack...); err != nil {
			t.Fatalf("round %d: Ack() = %v", round, err)
		}
		ackedTotal += len(ack)
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: Close() = %v", round, err)
		}
	}

	s := open(t, dir, crashOpts)
	var want []string
	for n := range durable {
		want = append(want, "r"+strconv.Itoa(n))
	}
	slices.SortFunc(want, func(a, b string) int {
		x, _ := strconv.Atoi(a[1:])
		y, _ := strconv.Atoi(b[1:])
		return x - y
	})
	checkPending(t, s, want)
	t.Logf("%d kills: %d records reported durable, none lost; %d acknowledged; the record in flight was on disk after %d kills, missing after %d (so at most 1 lost per kill); torn tails: %d from kills, %d injected, all cut; %d segments left",
		kills, appended, ackedTotal, inFlightKept, inFlightLost, killedTorn, injected, s.Stats().Segments)
}

// runAppender runs TestHelperAppender on dir from record number start,
// kills it with SIGKILL after it has been appending for d, and returns the
// numbers it reported durable.
func runAppender(t *testing.T, dir string, start int, d time.Duration) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAppender$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperStartEnv+"="+strconv.Itoa(start))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-lines:
		if l != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("appender: %q before ready; stderr: %s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("appender not ready after 30s; stderr: %s", stderr.String())
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var reported []int
	for l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "r"))
		if err != nil {
			t.Fatalf("appender printed %q; stderr: %s", l, stderr.String())
		}
		reported = append(reported, n)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("appender ended by %v, not SIGKILL; stderr: %s", err, stderr.String())
	}
	return reported
}

// injectTornFrame appends the first half of a frame to the newest
// segment in dir, if there is one.
func injectTornFrame(t *testing.T, dir string) bool {
	t.Helper()
	segs := slices.DeleteFunc(files(t, dir), func(name string) bool { return !strings.HasSuffix(name, segExt) })
	if len(segs) == 0 {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, segs[len(segs)-1]), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frame := appendFrame(nil, "torn", []byte("half of this frame never made it to disk"))
	if _, err := f.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	return true
}
