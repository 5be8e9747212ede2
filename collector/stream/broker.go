// Package stream is the collector's live stream of new results (their
// public columns only) and policy changes, served as Server-Sent Events
// (collector/httpapi) and as the gRPC DatasetService/Stream.
//
// A Follower listens to the database's notifications (collector/store
// ResultsChannel, sent by the ingest transaction of any collector sharing
// the database, and dataset.EventsChannel for the log of policy changes)
// and publishes what they announce to a Broker. The Broker numbers the
// events, keeps the latest in a bounded ring for resumption, and fans them
// out to its subscribers through bounded buffers with sends that never
// block: a subscriber whose buffer is full is dropped with a reason, and
// ingest never waits for anyone. docs/dataset.md, Live stream, is the
// subscribers' guide; docs/operator.md the operators'.
package stream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// ErrFull is returned by Subscribe when the broker holds its maximum of
// subscribers.
var ErrFull = errors.New("stream: the collector holds its maximum of live subscribers; try again later or another collector")

// ErrClosed is returned by Subscribe once the broker is closed.
var ErrClosed = errors.New("stream: the collector is shutting down; try another collector or again shortly")

// The reasons a subscriber is dropped, as reported to it and counted.
const (
	DropSlow     = "slow"     // its buffer was full
	DropShutdown = "shutdown" // the collector is stopping
)

// Options tune a Broker; zero fields take their defaults.
type Options struct {
	// Ring is how many of the latest events are kept for resumption
	// (65536, about half a minute at the design ingest rate).
	Ring int
	// Buffer is how many events may wait for one subscriber before it is
	// dropped as too slow (8192: four seconds at the design rate, and more
	// than one group commit of ingest announces at once).
	Buffer int
	// MaxSubscribers bounds the subscribers held at once (1000).
	MaxSubscribers int
	// Metrics counts subscribers, events and drops (nil: none).
	Metrics *Metrics
}

// Event is one numbered event. Its fields are shared by every subscriber
// and never modified after Publish.
type Event struct {
	Seq  uint64
	ID   string // Seq with the broker's epoch: what a subscriber resumes with
	Kind string // "result", "change" or "gap"
	// Msg is the event for gRPC; Msg.Event is what SSE sends as data.
	Msg *pb.StreamResponse
	// SSE is the event as one Server-Sent Events frame.
	SSE []byte
}

// Filter selects events; zero fields select any. Port and Verdicts select
// results only: changes have neither. Gaps match every filter.
type Filter struct {
	ASN      uint32
	Country  string
	Port     uint32
	Verdicts []pb.Verdict
}

// Match says whether f selects e.
func (f Filter) Match(e *Event) bool {
	switch ev := e.Msg.Event.(type) {
	case *pb.StreamResponse_Result:
		r := ev.Result
		return (f.ASN == 0 || f.ASN == r.Asn) && (f.Country == "" || f.Country == r.Country) &&
			(f.Port == 0 || f.Port == r.Port) && (len(f.Verdicts) == 0 || slices.Contains(f.Verdicts, r.Verdict))
	case *pb.StreamResponse_Change:
		c := ev.Change
		return (f.ASN == 0 || f.ASN == c.Asn) && (f.Country == "" || f.Country == c.Country)
	}
	return true
}

// Broker numbers events and fans them out to subscribers.
type Broker struct {
	opts  Options
	epoch string

	mu     sync.Mutex
	seq    uint64   // of the latest event
	ring   []*Event // the latest events, ring[seq%len]
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBroker returns an empty broker. Its event ids start with an epoch of
// its own, so that an id from another broker (another collector, or this
// one before a restart) is told apart.
func NewBroker(opts Options) *Broker {
	if opts.Ring <= 0 {
		opts.Ring = 65536
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = 1000
	}
	return &Broker{
		opts:  opts,
		epoch: strconv.FormatInt(time.Now().UnixNano(), 36),
		ring:  make([]*Event, opts.Ring),
		subs:  map[*Subscription]struct{}{},
	}
}

// Publish numbers msgs (their Event set, Id left empty), keeps them for
// resumption and hands each to the subscribers it matches, without
// blocking: a subscriber whose buffer is full is dropped.
func (b *Broker) Publish(msgs ...*pb.StreamResponse) {
	// The data of each event is marshalled once, outside the lock, for
	// every subscriber.
	kinds := make([]string, len(msgs))
	data := make([][]byte, len(msgs))
	for i, m := range msgs {
		kinds[i], data[i] = encode(m)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for i, m := range msgs {
		b.seq++
		e := &Event{Seq: b.seq, ID: b.epoch + "-" + strconv.FormatUint(b.seq, 10), Kind: kinds[i]}
		e.Msg = &pb.StreamResponse{Id: e.ID, Event: m.Event}
		e.SSE = fmt.Appendf(nil, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Kind, data[i])
		b.ring[b.seq%uint64(len(b.ring))] = e
		for s := range b.subs {
			if !s.filter.Match(e) {
				continue
			}
			select {
			case s.c <- e:
			default:
				b.drop(s, DropSlow, fmt.Sprintf("too slow: %d events waited for this subscriber; resume with the last event id", cap(s.c)))
			}
		}
	}
	b.opts.Metrics.published(len(msgs))
}

// jsonOptions are the API's (collector/httpapi): every field present,
// snake_case names.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// encode returns m's event type and its data as SSE sends it: the event's
// message in protojson, as the rest of the API.
func encode(m *pb.StreamResponse) (string, []byte) {
	var kind string
	var data []byte
	switch ev := m.Event.(type) {
	case *pb.StreamResponse_Result:
		kind, data = "result", marshal(ev.Result)
	case *pb.StreamResponse_Change:
		kind, data = "change", marshal(ev.Change)
	case *pb.StreamResponse_Gap:
		kind, data = "gap", marshal(ev.Gap)
	}
	return kind, data
}

func marshal(m proto.Message) []byte {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 fails, which PostgreSQL's text never holds.
		return []byte("{}")
	}
	return b
}

// drop removes s, which then ends with reason; b.mu is held.
func (b *Broker) drop(s *Subscription, why, reason string) {
	delete(b.subs, s)
	s.reason = reason
	close(s.c)
	b.opts.Metrics.dropped(why, len(b.subs))
}

// Subscription is one subscriber's view of the stream.
type Subscription struct {
	b      *Broker
	filter Filter
	c      chan *Event
	// Backlog is what to send before C: a gap when the resumed id is too
	// old or unknown, then the kept events after it that match.
	Backlog []*Event
	reason  string // why C was closed; set before the close
}

// C delivers the events as they are published; it is closed when the
// subscriber is dropped (Reason says why).
func (s *Subscription) C() <-chan *Event { return s.c }

// Reason says why C was closed.
func (s *Subscription) Reason() string { return s.reason }

// Close ends the subscription; C is closed unless it was already.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if _, ok := s.b.subs[s]; ok {
		delete(s.b.subs, s)
		s.reason = "closed"
		close(s.c)
		s.b.opts.Metrics.subscribers(len(s.b.subs))
	}
}

// Subscribe adds a subscriber of the events f selects, resuming after the
// event lastID (empty: from the next event). It returns ErrFull at the
// subscriber cap, ErrClosed once the broker is closed.
func (b *Broker) Subscribe(f Filter, lastID string) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if len(b.subs) >= b.opts.MaxSubscribers {
		b.opts.Metrics.dropped("full", len(b.subs))
		return nil, ErrFull
	}
	s := &Subscription{b: b, filter: f, c: make(chan *Event, b.opts.Buffer)}
	if lastID != "" {
		s.Backlog = b.since(f, lastID)
	}
	b.subs[s] = struct{}{}
	b.opts.Metrics.subscribers(len(b.subs))
	return s, nil
}

// since returns the kept events after lastID that f selects, after a gap
// event when some are no longer kept; b.mu is held.
func (b *Broker) since(f Filter, lastID string) []*Event {
	oldest := uint64(1)
	if b.seq > uint64(len(b.ring)) {
		oldest = b.seq - uint64(len(b.ring)) + 1
	}
	epoch, n, _ := strings.Cut(lastID, "-")
	after, err := strconv.ParseUint(n, 10, 64)
	var out []*Event
	gap := func(missed uint64, reason string) {
		m := &pb.StreamResponse{Id: lastID, Event: &pb.StreamResponse_Gap{Gap: &pb.StreamGap{Missed: missed, Reason: reason}}}
		kind, data := encode(m)
		out = append(out, &Event{ID: lastID, Kind: kind, Msg: m, SSE: fmt.Appendf(nil, "id: %s\nevent: %s\ndata: %s\n\n", lastID, kind, data)})
	}
	switch {
	case epoch != b.epoch || err != nil || after > b.seq:
		// Another collector's id, or one from before a restart: what
		// happened in between is not known here.
		gap(0, "the last event id is not one of this collector's since it started; events since then may be missing")
		after = oldest - 1
	case after+1 < oldest:
		gap(oldest-1-after, fmt.Sprintf("the last event id is too old: the collector keeps the latest %d events", len(b.ring)))
		after = oldest - 1
	}
	for seq := after + 1; seq <= b.seq; seq++ {
		if e := b.ring[seq%uint64(len(b.ring))]; f.Match(e) {
			out = append(out, e)
		}
	}
	return out
}

// Close drops every subscriber with the reason that the collector stops,
// and refuses new ones.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.drop(s, DropShutdown, "the collector is shutting down; resume with the last event id")
	}
}

// Sent counts n events written to the subscriber (the metrics).
func (s *Subscription) Sent(n int) { s.b.opts.Metrics.sentTo(n) }

// Held is how many subscribers b holds.
func Held(b *Broker) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
