package stream

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Source is the database the Follower listens to: *store.Store.
type Source interface {
	Listen(ctx context.Context, channels []string, ready func(), notice func(channel, payload string)) error
	Countries(ctx context.Context, asns []uint32) (map[uint32]string, error)
}

// Changes reads the log of policy changes: *dataset.Dataset.
type Changes interface {
	ChangeEvents(ctx context.Context, f dataset.EventFilter) ([]dataset.ChangeEvent, error)
}

// countryTTL is how long an ASN's country is trusted; as_names changes
// when the collector loads new AS names, rarely.
const countryTTL = 10 * time.Minute

// Follower publishes to a Broker what the database announces: the results
// any collector sharing it inserts (store.ResultsChannel) and the policy
// changes the refresh logs, which it reads by id after each
// dataset.EventsChannel notification, as collector/webhook does.
type Follower struct {
	src     Source
	changes Changes
	b       *Broker
	log     *slog.Logger

	cursor    int64 // the last change event published
	countries map[uint32]country
	ready     chan struct{}
}

type country struct {
	cc   string
	seen time.Time
}

// NewFollower returns a Follower of src and changes for b.
func NewFollower(src Source, changes Changes, b *Broker, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Follower{src: src, changes: changes, b: b, log: log, cursor: -1, countries: map[uint32]country{},
		ready: make(chan struct{})}
}

// Ready is closed once the Follower first listens: what is stored from
// then on is published.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Run listens until ctx ends, reconnecting with capped backoff. After a
// reconnection it publishes a gap: results stored while it was away were
// not announced to it. Policy changes are not lost: they are read from
// the log after the last one published.
func (f *Follower) Run(ctx context.Context) {
	connected, wait := false, time.Second
	for ctx.Err() == nil {
		err := f.src.Listen(ctx, []string{store.ResultsChannel, dataset.EventsChannel}, func() {
			if connected {
				f.b.Publish(&pb.StreamResponse{Event: &pb.StreamResponse_Gap{Gap: &pb.StreamGap{
					Reason: "the collector lost its database connection for a while; results stored meanwhile are missing from the stream"}}})
			}
			f.followChanges(ctx)
			if !connected {
				close(f.ready)
			}
			connected, wait = true, time.Second
		}, func(channel, payload string) {
			if channel == store.ResultsChannel {
				f.results(ctx, payload)
			} else {
				f.followChanges(ctx)
			}
		})
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("live stream: lost the database notifications; will reconnect", "in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// results publishes the results of one notification.
func (f *Follower) results(ctx context.Context, payload string) {
	rs, err := store.ParseNotice(payload)
	if err != nil {
		f.log.Warn("live stream: a results notice could not be read", "err", err)
		return
	}
	f.lookUp(ctx, rs)
	msgs := make([]*pb.StreamResponse, len(rs))
	for i, r := range rs {
		msgs[i] = &pb.StreamResponse{Event: &pb.StreamResponse_Result{Result: Public(r, f.countries[r.ASN].cc)}}
	}
	f.b.Publish(msgs...)
}

// lookUp brings the countries of rs's ASNs into f.countries.
func (f *Follower) lookUp(ctx context.Context, rs []store.PublicResult) {
	now := time.Now()
	var missing []uint32
	for _, r := range rs {
		if c, ok := f.countries[r.ASN]; r.ASN != 0 && (!ok || now.Sub(c.seen) > countryTTL) {
			f.countries[r.ASN] = country{seen: now}
			missing = append(missing, r.ASN)
		}
	}
	if len(missing) == 0 {
		return
	}
	ccs, err := f.src.Countries(ctx, missing)
	if err != nil {
		f.log.Warn("live stream: countries of ASNs", "err", err)
		return
	}
	for asn, cc := range ccs {
		f.countries[asn] = country{cc: cc, seen: now}
	}
}

// followChanges publishes the change events logged since the last one
// published; the first time, it only takes the newest id as its cursor.
func (f *Follower) followChanges(ctx context.Context) {
	if f.cursor < 0 {
		newest, err := f.changes.ChangeEvents(ctx, dataset.EventFilter{Newest: true, Limit: 1})
		if err != nil {
			f.log.Warn("live stream: policy changes", "err", err)
			return
		}
		f.cursor = 0
		if len(newest) > 0 {
			f.cursor = newest[0].ID
		}
		return
	}
	for {
		es, err := f.changes.ChangeEvents(ctx, dataset.EventFilter{After: f.cursor, Limit: 500})
		if err != nil {
			f.log.Warn("live stream: policy changes", "err", err)
			return
		}
		if len(es) == 0 {
			return
		}
		msgs := make([]*pb.StreamResponse, len(es))
		for i, e := range es {
			msgs[i] = &pb.StreamResponse{Event: &pb.StreamResponse_Change{Change: &pb.PolicyChange{
				Asn: e.ASN, Family: e.Family, FromClass: e.From, ToClass: e.To,
				ChangedAt: timestamppb.New(e.Day), Country: e.Country, Retracted: e.Retracted}}}
		}
		f.b.Publish(msgs...)
		f.cursor = es[len(es)-1].ID
	}
}

// Public is r as the stream publishes it: result_id and agent_id are left
// out.
func Public(r store.PublicResult, country string) *pb.PublicResult {
	fam := pb.AddressFamily_ADDRESS_FAMILY_IPV4
	if r.Family == 6 {
		fam = pb.AddressFamily_ADDRESS_FAMILY_IPV6
	}
	p := &pb.PublicResult{MeasuredAt: timestamppb.New(r.MeasuredAt), Asn: r.ASN, Country: country, Family: fam,
		Port: uint32(r.Port), Verdict: pb.Verdict(r.Verdict), Failure: r.Failure, RefmtaId: r.RefMTA}
	if r.Prefix.IsValid() {
		p.Prefix = r.Prefix.String()
	}
	return p
}
