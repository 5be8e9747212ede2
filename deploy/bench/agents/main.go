// Command agents is a load generator for make bench. By default it enrolls
// N agents with the collector, each on its own TLS connection with an open
// upload stream that has delivered one batch, and holds them all open
// until its standard input closes, so that the collector's memory with N
// agents connected can be measured.
//
//	agents --collector 127.0.0.1:8443 --ca ca.pem --token TOKEN --agents 10000
//
// With --schedule-interval it runs N enrolled agents on their schedule
// instead, as agent/daemon does: each at its own offset within the
// interval opens a connection, fetches the schedule, uploads a round of
// 18 results, ends its stream and lets the connection idle 30 s before it
// closes. It runs for --run, samples the collector's RSS and CPU time
// (--collector-pid), and prints what it measured as "key value" lines.
//
//	agents --collector 127.0.0.1:8443 --ca ca.pem --token TOKEN --agents 100000 \
//	  --schedule-interval 15m --run 3m --collector-pid PID
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func main() {
	addr := flag.String("collector", "127.0.0.1:8443", "collector address")
	ca := flag.String("ca", "", "collector CA file")
	token := flag.String("token", "", "enrollment token good for --agents uses")
	n := flag.Int("agents", 10000, "agents to connect")
	parallel := flag.Int("parallel", 64, "agents connecting (or, with --schedule-interval, enrolling) at once")
	interval := flag.Duration("schedule-interval", 0, "run the agents on a schedule of this interval (0: hold them connected)")
	run := flag.Duration("run", 3*time.Minute, "with --schedule-interval: how long the agents run")
	idle := flag.Duration("idle", collectorclient.IdleTimeout, "with --schedule-interval: how long a connection stays open after a round")
	enrollConns := flag.Int("enroll-conns", 8, "with --schedule-interval: connections the enrollments share")
	pid := flag.Int("collector-pid", 0, "with --schedule-interval: the collector's process, whose RSS and CPU time are sampled (0: none)")
	flag.Parse()
	ctx := context.Background()
	if *interval > 0 {
		err := runSchedule(ctx, scheduleConfig{addr: *addr, ca: *ca, token: *token, agents: *n, parallel: *parallel,
			enrollConns: max(*enrollConns, 1), interval: *interval, run: *run, idle: *idle, pid: *pid})
		if err != nil {
			fmt.Fprintln(os.Stderr, "agents:", err)
			os.Exit(1)
		}
		return
	}
	var connected, failed atomic.Int64
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := agent(ctx, *addr, *ca, *token); err != nil {
				if failed.Add(1) <= 5 {
					fmt.Fprintln(os.Stderr, "agents:", err)
				}
				return
			}
			connected.Add(1)
		}()
	}
	wg.Wait()
	fmt.Printf("connected %d failed %d in %s\n", connected.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	io.Copy(io.Discard, os.Stdin) // hold every connection until stdin closes
}

// agent enrolls one agent on its own connection, opens its upload stream
// and delivers one result, leaving the stream open.
func agent(ctx context.Context, addr, ca, token string) error {
	conn, err := collectorclient.Dial([]string{addr}, ca)
	if err != nil {
		return err
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	resp, err := op25bv1.NewEnrollmentServiceClient(conn).Enroll(ctx, &op25bv1.EnrollRequest{Token: token,
		Kind: op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, PublicKey: pub})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	sctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+resp.Credential)
	stream, err := op25bv1.NewAgentServiceClient(conn).UploadResults(sctx)
	if err != nil {
		return err
	}
	at := time.Now()
	err = stream.Send(&op25bv1.UploadResultsRequest{BatchId: 1, Results: []*op25bv1.ProbeResult{{ResultId: uuidv7.New(at),
		RefmtaId: "refmta-x", Port: 25, Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4,
		Verdict: op25bv1.Verdict_VERDICT_OPEN, StartedAt: timestamppb.New(at)}}})
	if err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}
