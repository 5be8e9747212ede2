// Package daemon is `op25b-agent run`: it follows the schedule the
// collector serves, probes on a jittered interval, appends every result to
// the on-disk spool (agent/spool) and delivers the spool over a streaming
// RPC, deleting results only once the collector acknowledged them after
// storing them. A crash loses at most the torn tail of the spool; an outage
// of the collector or its database only delays delivery. Results the spool
// could not keep (full, disk full, write error, damage) are counted on disk
// and reported with every upload batch and every schedule poll.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/agent/refmtaspec"
	"github.com/op25b/observatory/agent/report"
	"github.com/op25b/observatory/agent/spool"
	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Daemon is one running agent.
type Daemon struct {
	Conn     *grpc.ClientConn
	Identity collectorclient.Identity
	Spool    *spool.Spool
	Version  string
	Log      *slog.Logger
	// ScheduleEvery is how often the schedule is fetched besides before
	// each round (default 15 min): between rounds the agent holds no
	// connection to the collector.
	ScheduleEvery time.Duration
	// Batch is the number of results per upload message (default 200); a
	// batch goes on past it to the end of its last round, up to MaxBatch,
	// because the collector compares reference MTAs within one upload.
	Batch int
	// Drain bounds the final delivery after SIGTERM (default 10 s).
	Drain time.Duration
	// RetryMax caps the backoff between delivery attempts (default 5 min).
	RetryMax time.Duration
	// RetryAfter waits out the backoff between delivery attempts (default
	// time.After); tests give the daemon a faster clock with it.
	RetryAfter func(time.Duration) <-chan time.Time

	schedule atomic.Pointer[op25bv1.Schedule]
	spooled  chan struct{} // a round appended results
	gotFirst chan struct{}
	once     sync.Once
}

// Run runs until ctx is done, then finishes the round in flight, delivers
// what it can within Drain and returns. It returns an error when the
// collector refuses the agent's credential (revoked): retrying cannot help.
func (d *Daemon) Run(ctx context.Context) error {
	if d.ScheduleEvery == 0 {
		d.ScheduleEvery = 15 * time.Minute
	}
	if d.Batch <= 0 {
		d.Batch = 200
	}
	d.Batch = min(d.Batch, MaxBatch)
	if d.Drain == 0 {
		d.Drain = 10 * time.Second
	}
	if d.RetryMax == 0 {
		d.RetryMax = 5 * time.Minute
	}
	if d.RetryAfter == nil {
		d.RetryAfter = time.After
	}
	d.spooled = make(chan struct{}, 1)
	d.gotFirst = make(chan struct{})
	// work outlives ctx: a SIGTERM lets the round in flight finish and the
	// uploader drain; fatal ends everything at once.
	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var fatal error
	var fatalOnce sync.Once
	die := func(err error) {
		fatalOnce.Do(func() { fatal = err; stopWork() })
	}

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); d.followSchedule(ctx, work, die) }()
	roundsDone := make(chan struct{})
	go func() { defer wg.Done(); defer close(roundsDone); d.rounds(ctx, work) }()
	go func() { defer wg.Done(); d.deliver(work, roundsDone, die) }()
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		<-roundsDone
		// The last round is spooled: give delivery Drain to flush it.
		t := time.NewTimer(d.Drain)
		defer t.Stop()
		select {
		case <-t.C:
		case <-work.Done():
		}
		stopWork()
	}()
	wg.Wait()
	st := d.Spool.Stats()
	d.Log.Info("agent stopped", "undelivered", st.Pending, "lost_total", st.Lost.Total())
	return fatal
}

// followSchedule fetches the schedule now and every ScheduleEvery (and
// rounds fetch it before they start); a new version is picked up by the
// next round without a restart.
func (d *Daemon) followSchedule(ctx, work context.Context, die func(error)) {
	b := collectorclient.Backoff{Min: time.Second, Max: d.ScheduleEvery}
	for {
		wait := d.ScheduleEvery
		switch err := d.fetchSchedule(ctx); {
		case err == nil:
			b.Reset()
		case collectorclient.Permanent(err):
			die(fmt.Errorf("the collector refused this agent: %w", err))
			return
		case ctx.Err() == nil:
			wait = b.Next()
			d.Log.Warn("fetching the schedule failed; retrying", "err", err, "in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-work.Done():
			return
		case <-time.After(wait):
		}
	}
}

// fetchSchedule asks the collector for the schedule, reporting the
// spool's losses, and keeps a new version.
func (d *Daemon) fetchSchedule(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := op25bv1.NewAgentServiceClient(d.Conn).GetSchedule(cctx, &op25bv1.GetScheduleRequest{
		CurrentVersion: d.schedule.Load().GetVersion(), AgentVersion: d.Version, Spool: spoolStats(d.Spool.Stats())}, d.Identity.CallOption())
	if err != nil {
		return err
	}
	if sch := resp.GetSchedule(); sch != nil {
		d.schedule.Store(sch)
		d.Log.Info("schedule", "version", sch.GetVersion(), "refmtas", len(sch.GetReferenceMtas()), "interval", sch.GetInterval().AsDuration())
		d.once.Do(func() { close(d.gotFirst) })
	}
	return nil
}

// RoundOffset is where in the interval the agent's rounds fall: the
// collector's offset when the schedule carries one (it spreads the agents
// of one prefix), else Offset over the jitter window.
func RoundOffset(sch *op25bv1.Schedule, agentID string) time.Duration {
	if off := sch.GetOffset(); off != nil {
		return off.AsDuration()
	}
	return Offset(agentID, sch.GetJitter().AsDuration())
}

// Offset spreads agents over the jitter window by hashing their id, so
// that thousands of agents never fire in lockstep and each keeps its slot.
func Offset(agentID string, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(agentID))
	return time.Duration(h.Sum64() % uint64(jitter))
}

// NextRound is the first round start after now: rounds fall on
// multiples of interval since the Unix epoch, shifted by offset.
func NextRound(now time.Time, interval, offset time.Duration) time.Time {
	if interval <= 0 {
		interval = 15 * time.Minute
	}
	base := now.Add(-offset).Truncate(interval).Add(offset)
	if !base.After(now) {
		base = base.Add(interval)
	}
	return base
}

// rounds runs a round at every slot of the current schedule until ctx is
// done; a round that has started finishes (on work, not ctx).
func (d *Daemon) rounds(ctx, work context.Context) {
	select {
	case <-d.gotFirst:
	case <-ctx.Done():
		return
	case <-work.Done():
		return
	}
	first := true
	for {
		sch := d.schedule.Load()
		wait := time.Duration(0)
		if !first {
			wait = time.Until(NextRound(time.Now(), sch.GetInterval().AsDuration(), RoundOffset(sch, d.Identity.ID)))
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-work.Done():
			return
		case <-time.After(wait):
		}
		// The schedule as of now, and the losses reported: the agent has
		// held no connection since the last round. A failure leaves the
		// schedule it has (followSchedule retries).
		if err := d.fetchSchedule(work); err != nil {
			d.Log.Warn("fetching the schedule before the round failed; probing with the one we have", "err", err)
		}
		d.round(work, d.schedule.Load())
	}
}

// round probes once and spools every result.
func (d *Daemon) round(ctx context.Context, sch *op25bv1.Schedule) {
	var targets []probe.Target
	for _, m := range sch.GetReferenceMtas() {
		id, err := refmtaspec.FromProto(m)
		if err != nil {
			d.Log.Warn("schedule lists an unusable reference MTA", "id", m.GetId(), "err", err)
			continue
		}
		// The schedule's ports, when it lists any, replace each reference
		// MTA's own list.
		var ports []uint16
		for _, p := range sch.GetPorts() {
			ports = append(ports, uint16(p))
		}
		targets = append(targets, id.Targets(refmtaspec.Options{Ports: ports})...)
	}
	if len(targets) == 0 {
		d.Log.Warn("the schedule lists no reference MTA to probe")
		return
	}
	roundID := uuidv7.New(time.Now())
	results, err := probe.Round(ctx, probe.Config{Timeout: sch.GetProbeTimeout().AsDuration(), Logger: d.Log}, targets)
	if err != nil {
		d.Log.Error("round could not run", "err", err)
		return
	}
	recs := make([]spool.Record, 0, len(results))
	for _, r := range results {
		pr := report.ProbeResult(r, roundID, d.Version)
		pr.AgentId, pr.ScheduleVersion = d.Identity.ID, sch.GetVersion()
		b, err := proto.Marshal(pr)
		if err != nil {
			d.Log.Error("encoding a result", "err", err)
			continue
		}
		recs = append(recs, spool.Record{ID: pr.ResultId, Payload: b})
	}
	spooled := len(recs)
	var drop *spool.DropError
	if err := d.Spool.AppendBatch(recs); errors.As(err, &drop) {
		// Counted on disk, and reported to the collector with the next
		// batch or schedule poll.
		spooled -= drop.Dropped
		st := d.Spool.Stats()
		d.Log.Error("results of the round lost: the spool could not keep them", "round", roundID, "lost", drop.Dropped,
			"err", err, "lost_total", st.Lost.Total())
	} else if err != nil {
		// The spool refused the batch: a bug, not a state of the disk.
		spooled = 0
		d.Log.Error("results of the round lost: the spool refused them", "round", roundID, "lost", len(recs), "err", err)
	}
	d.Log.Info("round done", "round", roundID, "results", len(recs), "spooled", spooled, "pending", d.Spool.Len())
	if spooled == 0 {
		return
	}
	select {
	case d.spooled <- struct{}{}:
	default:
	}
}

// spoolStats is what the agent reports of its spool with every upload
// batch and schedule poll: the collector keeps the loss counts per agent.
func spoolStats(st spool.Stats) *op25bv1.SpoolStats {
	return &op25bv1.SpoolStats{PendingResults: uint64(st.Pending), DroppedFull: uint64(st.DroppedFull), CorruptRecords: uint64(st.CorruptRecords),
		Lost: &op25bv1.SpoolLoss{SpoolId: st.Lost.SpoolID, Full: uint64(st.Lost.Full), NoSpace: uint64(st.Lost.NoSpace),
			WriteError: uint64(st.Lost.WriteError), Corrupt: uint64(st.Lost.Corrupt)}}
}

// deliver sends the spool until work is done and everything the rounds
// spooled has been delivered or Drain ran out.
func (d *Daemon) deliver(work context.Context, roundsDone <-chan struct{}, die func(error)) {
	b := collectorclient.Backoff{Min: time.Second, Max: d.RetryMax}
	for work.Err() == nil {
		delivered, err := d.stream(work, roundsDone)
		if err == nil || work.Err() != nil {
			return
		}
		if errors.Is(err, errIdle) {
			b.Reset()
			continue
		}
		if collectorclient.Permanent(err) {
			die(fmt.Errorf("the collector refused this agent: %w", err))
			return
		}
		if delivered {
			// The collector took results on this stream: it is back, so
			// a new fault starts from the shortest wait, not from where
			// the last outage left the backoff (minutes, while a small
			// spool fills).
			b.Reset()
		}
		d.Log.Warn("delivery interrupted; results stay spooled", "err", err, "pending", d.Spool.Len())
		select {
		case <-work.Done():
			return
		case <-d.RetryAfter(b.Next()):
		}
		if d.Spool.Len() == 0 {
			b.Reset()
		}
	}
}

// errIdle ends a stream that delivered everything spooled.
var errIdle = errors.New("nothing left to deliver")

// stream runs one upload stream until the spool is empty. It returns nil
// once the rounds are done and the spool is empty, errIdle when the spool
// is empty and rounds go on, and whether the collector answered a batch.
func (d *Daemon) stream(work context.Context, roundsDone <-chan struct{}) (delivered bool, err error) {
	// Wait for something to deliver before opening a stream; a round
	// says when it spooled, and the spool is looked at every second for
	// what came otherwise.
	for d.Spool.Len() == 0 {
		select {
		case <-d.spooled:
		case <-roundsDone:
			if d.Spool.Len() == 0 {
				return false, nil
			}
		case <-work.Done():
			return false, work.Err()
		case <-time.After(time.Second):
		}
	}
	sctx, cancel := context.WithCancel(work)
	defer cancel()
	stream, err := op25bv1.NewAgentServiceClient(d.Conn).UploadResults(sctx, d.Identity.CallOption())
	if err != nil {
		return false, err
	}
	var batch uint64
	for {
		results := d.nextBatch()
		if len(results) == 0 {
			// Everything spooled is delivered: end the stream rather than
			// hold it until the next round (deliver opens another when a
			// round spools), so that the connection can close.
			stream.CloseSend()
			if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
				return delivered, err
			}
			select {
			case <-roundsDone:
				if d.Spool.Len() == 0 {
					return delivered, nil
				}
			default:
			}
			return delivered, errIdle
		}
		batch++
		req := &op25bv1.UploadResultsRequest{BatchId: batch, Results: results, Spool: spoolStats(d.Spool.Stats())}
		if err := stream.Send(req); err != nil {
			_, rerr := stream.Recv()
			return delivered, errors.Join(err, rerr)
		}
		resp, err := stream.Recv()
		if err != nil {
			return delivered, err
		}
		delivered = true
		done := append([]string(nil), resp.GetAckedResultIds()...)
		for _, rej := range resp.GetRejections() {
			d.Log.Warn("the collector rejected a result", "id", rej.GetResultId(), "reason", rej.GetReason())
			done = append(done, rej.GetResultId())
		}
		if err := d.Spool.Ack(done...); err != nil {
			return delivered, fmt.Errorf("spool ack: %w", err)
		}
	}
}

// MaxBatch is the most results the collector accepts in one upload
// message (collector/api.MaxBatch, which the agent does not link).
const MaxBatch = 1000

// nextBatch returns the oldest spooled results to upload next: Batch of
// them, and the rest of the last one's round (BatchEnd). It reads one
// record past Batch to see whether the round goes on, and reads again up
// to MaxBatch only when it does.
func (d *Daemon) nextBatch() []*op25bv1.ProbeResult {
	for _, n := range []int{d.Batch + 1, MaxBatch} {
		recs := d.Spool.Pending(n)
		results := make([]*op25bv1.ProbeResult, 0, len(recs))
		rounds := make([]string, 0, len(recs))
		for _, r := range recs {
			var pr op25bv1.ProbeResult
			if err := proto.Unmarshal(r.Payload, &pr); err != nil {
				// Cannot happen unless the disk lied past the checksum;
				// such a record can never be delivered.
				d.Log.Error("dropping an undecodable spooled result", "id", r.ID, "err", err)
				d.Spool.Ack(r.ID)
				continue
			}
			results = append(results, &pr)
			rounds = append(rounds, pr.GetRoundId())
		}
		end := BatchEnd(rounds, d.Batch)
		if end < len(results) || len(recs) < n || n == MaxBatch {
			return results[:end]
		}
	}
	return nil
}

// BatchEnd returns how many of the results whose round ids are rounds (in
// spool order) make the next upload: size of them, then on to the end of
// the last one's round, never more than MaxBatch. Results without a round
// id end a batch where they fall.
func BatchEnd(rounds []string, size int) int {
	end := min(size, len(rounds), MaxBatch)
	for end > 0 && end < min(len(rounds), MaxBatch) && rounds[end] != "" && rounds[end] == rounds[end-1] {
		end++
	}
	return end
}
