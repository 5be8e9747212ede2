package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/agent/daemon"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// scheduleConfig is the schedule mode's flags.
type scheduleConfig struct {
	addr, ca, token string
	agents          int
	parallel        int           // enrollments at once
	enrollConns     int           // connections the enrollments share
	interval        time.Duration // the schedule's interval
	run             time.Duration // how long the agents run on it
	idle            time.Duration // how long a connection stays open after a round
	pid             int           // the collector's process, sampled; 0: none
}

// enrolled is one agent kept in memory: its key (which the collector
// holds the public half of) and its credential.
type enrolled struct {
	id   string
	key  ed25519.PrivateKey
	cred grpc.CallOption
}

// runSchedule enrolls c.agents agents, then runs each on the schedule as
// agent/daemon does: at its own offset within the interval it opens a
// new connection, fetches the schedule, uploads a round of 18 results on
// one stream, ends the stream, and keeps the connection 30 s more (the
// client's idle timeout) before it closes. It prints what it measured as
// "key value" lines.
func runSchedule(ctx context.Context, c scheduleConfig) error {
	var s sampler
	if c.pid != 0 {
		s.pid = c.pid
		idle, err := s.read()
		if err != nil {
			return err
		}
		fmt.Printf("collector_rss_idle_kib %d\n", idle.rss)
	}

	start := time.Now()
	agents, err := enrollAll(ctx, c)
	if err != nil {
		return err
	}
	fmt.Printf("enrolled %d\nenroll_s %.1f\n", len(agents), time.Since(start).Seconds())
	if c.pid != 0 {
		time.Sleep(2 * time.Second) // let the enrollments' garbage go
		after, err := s.read()
		if err != nil {
			return err
		}
		fmt.Printf("collector_rss_enrolled_kib %d\n", after.rss)
	}

	// Each agent's first round after now, at the offset the real agent
	// takes when the schedule names none (a hash of its id over the
	// interval): uniform over the interval.
	type due struct {
		at time.Time
		a  *enrolled
	}
	begin := time.Now()
	end := begin.Add(c.run)
	queue := make([]due, 0, len(agents))
	for i := range agents {
		at := daemon.NextRound(begin, c.interval, daemon.Offset(agents[i].id, c.interval))
		queue = append(queue, due{at, &agents[i]})
	}
	slices.SortFunc(queue, func(a, b due) int { return a.at.Compare(b.at) })

	var st roundStats
	if c.pid != 0 {
		go s.run(ctx, time.Second)
	}
	var wg sync.WaitGroup
	// Rounds in order of their time; with a run longer than the interval
	// the agents come round again.
	for k := 0; ; k++ {
		shift := time.Duration(k) * c.interval
		if !begin.Add(shift).Before(end) {
			break
		}
		for _, d := range queue {
			at := d.at.Add(shift)
			if !at.Before(end) {
				break
			}
			time.Sleep(time.Until(at))
			wg.Add(1)
			go func(a *enrolled) {
				defer wg.Done()
				if err := st.round(ctx, c, a); err != nil && st.failed.Add(1) <= 5 {
					fmt.Fprintln(os.Stderr, "agents: round:", err)
				}
			}(d.a)
		}
	}
	time.Sleep(time.Until(end))
	wall := time.Since(begin)
	var peak sample
	if c.pid != 0 {
		var err error
		if peak, err = s.stop(); err != nil {
			return err
		}
	}
	fmt.Printf("run_s %.0f\ninterval_s %.0f\nrounds_started %d\nrounds_done %d\nrounds_failed %d\nresults_rejected %d\npeak_connections %d\n",
		wall.Seconds(), c.interval.Seconds(), st.started.Load(), st.done.Load(), st.failed.Load(), st.rejected.Load(), st.peak.Load())
	if c.pid != 0 {
		fmt.Printf("collector_rss_peak_kib %d\ncollector_hwm_kib %d\ncollector_cpu_share %.2f\n",
			peak.rss, peak.hwm, s.cpuShare())
	}
	wg.Wait() // the last connections close after their idle time
	return nil
}

// enrollAll enrolls c.agents agents, c.parallel at a time over
// c.enrollConns shared connections: enrollment is not what is measured,
// and one TLS handshake per agent would only make it slower.
func enrollAll(ctx context.Context, c scheduleConfig) ([]enrolled, error) {
	conns := make([]op25bv1.EnrollmentServiceClient, c.enrollConns)
	for i := range conns {
		conn, err := collectorclient.Dial([]string{c.addr}, c.ca)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		conns[i] = op25bv1.NewEnrollmentServiceClient(conn)
	}
	agents := make([]enrolled, c.agents)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	go func() { // progress, for a run of minutes
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(os.Stderr, "agents: enrolled %d of %d\n", min(next.Load(), int64(c.agents)), c.agents)
			case <-stop:
				return
			}
		}
	}()
	for w := 0; w < c.parallel; w++ {
		wg.Add(1)
		go func(cl op25bv1.EnrollmentServiceClient) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(agents) {
					return
				}
				pub, key, _ := ed25519.GenerateKey(rand.Reader)
				resp, err := cl.Enroll(ctx, &op25bv1.EnrollRequest{Token: c.token,
					Kind: op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, PublicKey: pub})
				if err != nil {
					if failed.Add(1) <= 5 {
						fmt.Fprintln(os.Stderr, "agents: enroll:", err)
					}
					continue
				}
				id := collectorclient.Identity{Credential: resp.GetCredential()}
				agents[i] = enrolled{id: resp.GetPrincipalId(), key: key, cred: id.CallOption()}
			}
		}(conns[w%len(conns)])
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d of %d enrollments failed", n, c.agents)
	}
	return agents, nil
}

// roundStats counts rounds and the connections open at once.
type roundStats struct {
	started, done, failed, rejected atomic.Int64
	open, peak                      atomic.Int64
}

// ports, families and refMTAs make a round: 3 ports × 2 families × 3
// reference MTAs, 18 results.
var (
	ports    = []uint32{25, 587, 465}
	families = []op25bv1.AddressFamily{op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4, op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6}
	refMTAs  = []string{"bench-refmta-1", "bench-refmta-2", "bench-refmta-3"}
)

// round is one agent's round as agent/daemon makes it, on a new
// connection that it keeps c.idle after its last call.
func (st *roundStats) round(ctx context.Context, c scheduleConfig, a *enrolled) error {
	st.started.Add(1)
	conn, err := collectorclient.Dial([]string{c.addr}, c.ca)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The connection is open from the first call until it closes.
	if n := st.open.Add(1); n > st.peak.Load() {
		for p := st.peak.Load(); n > p && !st.peak.CompareAndSwap(p, n); p = st.peak.Load() {
		}
	}
	defer st.open.Add(-1)

	cl := op25bv1.NewAgentServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := cl.GetSchedule(cctx, &op25bv1.GetScheduleRequest{AgentVersion: "bench"}, a.cred); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	now := time.Now()
	results := make([]*op25bv1.ProbeResult, 0, len(ports)*len(families)*len(refMTAs))
	for _, r := range refMTAs {
		for _, f := range families {
			for _, p := range ports {
				at := time.Now()
				results = append(results, &op25bv1.ProbeResult{ResultId: uuidv7.New(at), RefmtaId: r, Port: p, Family: f,
					Verdict: op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, StartedAt: timestamppb.New(at), RoundId: uuidv7.New(now)})
			}
		}
	}
	stream, err := cl.UploadResults(cctx, a.cred)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if err := stream.Send(&op25bv1.UploadResultsRequest{BatchId: 1, Results: results}); err != nil {
		_, rerr := stream.Recv()
		return fmt.Errorf("upload: %w", errors.Join(err, rerr))
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	st.rejected.Add(int64(len(resp.GetRejections())))
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("end of stream: %w", err)
	}
	st.done.Add(1)
	// The real agent's connection idles this long after its last call,
	// then closes (collectorclient.IdleTimeout).
	select {
	case <-time.After(c.idle):
	case <-ctx.Done():
	}
	return nil
}

// sample is one reading of a process's memory and CPU time.
type sample struct {
	rss, hwm int64 // KiB
	ticks    int64 // utime + stime
	at       time.Time
}

// sampler reads /proc/PID of the collector.
type sampler struct {
	pid         int
	mu          sync.Mutex
	first, last sample
	peakRSS     int64
	done        chan struct{}
	stopped     chan struct{}
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

func (s *sampler) read() (sample, error) {
	x := sample{at: time.Now()}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return x, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			x.rss = n
		case "VmHWM":
			x.hwm = n
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return x, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return x, fmt.Errorf("agents: /proc/%d/stat: too few fields", s.pid)
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	stt, _ := strconv.ParseInt(fs[12], 10, 64)
	x.ticks = ut + stt
	return x, nil
}

// run samples every period until stop.
func (s *sampler) run(ctx context.Context, period time.Duration) {
	s.mu.Lock()
	s.done, s.stopped = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	defer close(s.stopped)
	t := time.NewTicker(period)
	defer t.Stop()
	for first := true; ; first = false {
		if x, err := s.read(); err == nil {
			s.mu.Lock()
			if first {
				s.first = x
			}
			s.last = x
			s.peakRSS = max(s.peakRSS, x.rss)
			s.mu.Unlock()
		}
		select {
		case <-t.C:
		case <-s.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stop ends the sampling with one last reading and returns the peak.
func (s *sampler) stop() (sample, error) {
	s.mu.Lock()
	done, stopped := s.done, s.stopped
	s.mu.Unlock()
	if done == nil {
		return sample{}, errors.New("agents: sampler not running")
	}
	close(done)
	<-stopped
	x, err := s.read()
	if err != nil {
		return x, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = x
	s.peakRSS = max(s.peakRSS, x.rss)
	return sample{rss: s.peakRSS, hwm: x.hwm}, nil
}

// cpuShare is the collector's CPU time per wall second over the
// sampling, as a share of one core.
func (s *sampler) cpuShare() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	wall := s.last.at.Sub(s.first.at).Seconds()
	if wall <= 0 {
		return 0
	}
	return float64(s.last.ticks-s.first.ticks) / clockTicks / wall
}
