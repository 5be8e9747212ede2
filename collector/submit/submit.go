// Package submit takes one-off contributions: a round that `op25b-agent
// check --submit` ran against the collector's reference MTAs and uploads
// without enrolling. Anyone may submit, so a submission is held to more
// than an enrolled agent's upload (docs/dataset.md, "One-off
// contributions"):
//
//   - it is bounded per client address and per /24 or /48 (token buckets);
//   - every result is from a reference MTA of the schedule, measured in
//     the last hour, and names no agent;
//   - a conclusive verdict needs a statement signed by that reference MTA
//     which places the prober (the control port's, or the probe's with its
//     nonce), made within minutes of the result, and OPEN needs the
//     probe's own: an address that only says so cannot add a verdict;
//   - a round, a result or a nonce is taken once (store.InsertSubmission).
//
// A submission is taken whole or not at all, with a reason the volunteer
// can act on. Its results are stored like any agent's and attributed the
// same way (collector/ingest), and counted at most once per prefix in the
// shares (store, tallyAgent).
package submit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/op25b/observatory/collector/asn"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/clip"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/ratelimit"
	"github.com/op25b/observatory/internal/uuidv7"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Bounds of one submission.
const (
	// MaxResults bounds the results of one round: 3 reference MTAs, 3
	// ports and 2 families are 18.
	MaxResults = 64
	// MaxAge is how old a submitted result may be: a check submits when
	// its round ends, minutes after it began.
	MaxAge = time.Hour
	// statementWindow is how far a statement vouching for a result may be
	// from the result's time.
	statementWindow = 10 * time.Minute
)

// The errors Submit returns wrap one of these.
var (
	// ErrInvalid: the submission is malformed or lacks the evidence it
	// needs; sending it again will not help.
	ErrInvalid = errors.New("invalid submission")
	// ErrDisabled: this collector takes no one-off contributions.
	ErrDisabled = errors.New("this collector takes no one-off contributions")
	// ErrUnavailable: storage failed; nothing was stored, try again.
	ErrUnavailable = errors.New("storage unavailable; nothing was stored: try again")
)

// RateError says that the client or its network is over its rate.
type RateError struct {
	RetryAfter time.Duration
	What       string
}

func (e *RateError) Error() string { return e.What }

// Inserter stores a submission; *store.Store is one.
type Inserter interface {
	InsertSubmission(ctx context.Context, sub store.Submission, rs []store.Result) error
}

// Options tune a Service. The zero value of a field means its default.
type Options struct {
	// PerAddress is how many submissions one client (an IPv4 address or an
	// IPv6 /64) may make per hour (6), in bursts of AddressBurst (3).
	PerAddress   float64
	AddressBurst int
	// PerPrefix is how many submissions one /24 or /48 may make per hour
	// (30), in bursts of PrefixBurst (10).
	PerPrefix   float64
	PrefixBurst int
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives what is stored (info) and failures (error).
	Logger *slog.Logger
	// Count, when set, is told the outcome of every submission: one of
	// Outcomes.
	Count func(outcome string)
}

// Outcomes are what Options.Count is told.
var Outcomes = []string{"stored", "invalid", "replayed", "rate_limited", "disabled", "unavailable"}

// outcome names what err says of a submission.
func outcome(err error) string {
	var rate *RateError
	switch {
	case err == nil:
		return "stored"
	case errors.As(err, &rate):
		return "rate_limited"
	case errors.Is(err, store.ErrReplayed):
		return "replayed"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "invalid"
}

// Service takes submissions.
type Service struct {
	store    Inserter
	asn      ingest.Attributor
	schedule func() *pb.Schedule
	addr     *ratelimit.Limiter[netip.Prefix]
	prefix   *ratelimit.Limiter[netip.Prefix]
	addrWait time.Duration
	pfxWait  time.Duration
	now      func() time.Time
	log      *slog.Logger
	count    func(string)
}

// New returns a Service that stores into st, attributes with a (nil: no
// ASN) and accepts the reference MTAs of schedule's current plan.
func New(st Inserter, a ingest.Attributor, schedule func() *pb.Schedule, o Options) *Service {
	if o.PerAddress <= 0 {
		o.PerAddress = 6
	}
	if o.AddressBurst <= 0 {
		o.AddressBurst = 3
	}
	if o.PerPrefix <= 0 {
		o.PerPrefix = 30
	}
	if o.PrefixBurst <= 0 {
		o.PrefixBurst = 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	perSecond := func(perHour float64) float64 { return perHour / 3600 }
	wait := func(perHour float64) time.Duration {
		return time.Duration(math.Ceil(3600/perHour)) * time.Second
	}
	return &Service{
		store: st, asn: a, schedule: schedule,
		addr:     ratelimit.New[netip.Prefix](perSecond(o.PerAddress), o.AddressBurst, o.Now),
		prefix:   ratelimit.New[netip.Prefix](perSecond(o.PerPrefix), o.PrefixBurst, o.Now),
		addrWait: wait(o.PerAddress), pfxWait: wait(o.PerPrefix),
		now: o.Now, log: o.Logger, count: o.Count,
	}
}

// Schedule returns the plan a one-off check follows: the collector's
// reference MTAs, ports and probe timeout. Nil when it has none.
func (s *Service) Schedule() *pb.Schedule { return s.schedule() }

// Submit stores the round in req, sent from client, and returns the new
// submission's id. Errors wrap ErrInvalid, ErrDisabled, ErrUnavailable or
// store.ErrReplayed, or are a *RateError.
func (s *Service) Submit(ctx context.Context, client netip.Addr, req *pb.SubmitRoundRequest) (id string, err error) {
	if s.count != nil {
		defer func() { s.count(outcome(err)) }()
	}
	client = client.Unmap()
	if !client.IsValid() {
		return "", fmt.Errorf("%w: the client's address is unknown", ErrInvalid)
	}
	if !s.addr.Allow(ratelimit.Source(client)) {
		return "", &RateError{RetryAfter: s.addrWait, What: "too many submissions from your address: one round every few minutes is plenty; try again later"}
	}
	if !s.prefix.Allow(asn.PublicPrefix(client)) {
		return "", &RateError{RetryAfter: s.pfxWait, What: "too many submissions from your network (" + asn.PublicPrefix(client).String() + ") this hour; try again later"}
	}
	sch := s.schedule()
	keys := scheduleKeys{}
	for _, m := range sch.GetReferenceMtas() {
		if len(m.GetPublicKey()) == ed25519.PublicKeySize {
			keys[m.GetId()] = ed25519.PublicKey(m.GetPublicKey())
		}
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%w: the collector has no reference MTA in its schedule", ErrDisabled)
	}
	rep := req.GetReport()
	roundID, err := checkRound(rep, keys)
	if err != nil {
		return "", err
	}
	now := s.now()
	c := ingest.Converter{Keys: keys, ASN: s.asn, Limits: ingest.Limits{MaxFuture: 5 * time.Minute, MaxAge: MaxAge}, Now: func() time.Time { return now }}
	b := c.Convert(rep.GetResults(), "", client)
	if len(b.Rejected) > 0 {
		r := b.Rejected[0]
		return "", fmt.Errorf("%w: result %s: %s (%d of the round's %d results refused; run the check again)",
			ErrInvalid, r.ResultID, r.Reason, len(b.Rejected), len(rep.GetResults()))
	}
	for i, pr := range rep.GetResults() {
		if err := vouched(pr, keys[pr.GetRefmtaId()], b.Results[i]); err != nil {
			return "", err
		}
	}
	sub := store.Submission{ID: uuidv7.New(now), RoundID: roundID, Client: client, AgentVersion: b.Results[0].AgentVersion}
	for i := range b.Results {
		b.Results[i].SubmissionID = sub.ID
	}
	switch err := s.store.InsertSubmission(ctx, sub, b.Results); {
	case errors.Is(err, store.ErrReplayed):
		return "", err
	case err != nil:
		s.log.Error("storing a submission failed; nothing stored", "round", roundID, "results", len(b.Results), "err", err)
		return "", ErrUnavailable
	}
	s.log.Info("one-off submission stored", "submission", sub.ID, "results", len(b.Results), "prefix", asn.PublicPrefix(client))
	return sub.ID, nil
}

// checkRound checks the shape of a submitted report: results, at most
// MaxResults, of one round, from no agent, each from a reference MTA in
// keys. It returns the round's id.
func checkRound(rep *pb.ProbeReport, keys scheduleKeys) (string, error) {
	rs := rep.GetResults()
	switch {
	case len(rs) == 0:
		return "", fmt.Errorf("%w: the report has no results", ErrInvalid)
	case len(rs) > MaxResults:
		return "", fmt.Errorf("%w: %d results; a round has at most %d", ErrInvalid, len(rs), MaxResults)
	}
	roundID := rep.GetRoundId()
	if _, _, err := uuidv7.Parse(roundID); err != nil {
		return "", fmt.Errorf("%w: round_id %q is not a UUIDv7", ErrInvalid, clipID(roundID))
	}
	for _, r := range rs {
		switch {
		case r.GetRoundId() != roundID:
			return "", fmt.Errorf("%w: result %s is of round %q, not of the report's %s", ErrInvalid, clipID(r.GetResultId()), clipID(r.GetRoundId()), roundID)
		case r.GetAgentId() != "":
			return "", fmt.Errorf("%w: result %s names agent %q: an enrolled agent delivers its results itself (op25b-agent run)", ErrInvalid, clipID(r.GetResultId()), clipID(r.GetAgentId()))
		case keys[r.GetRefmtaId()] == nil:
			return "", fmt.Errorf("%w: reference MTA %q is not in this collector's schedule (GET /api/v1/schedule lists them; run the check without --refmta)", ErrInvalid, clipID(r.GetRefmtaId()))
		}
	}
	return roundID, nil
}

// vouched checks that a converted result has the signed evidence a one-off
// verdict needs: any verdict but INCONCLUSIVE an egress address from a
// statement of its reference MTA, made near the result's time (ingest
// takes the control port's only when it is); OPEN the probe's own
// statement, with its nonce.
func vouched(pr *pb.ProbeResult, key ed25519.PublicKey, r store.Result) error {
	verdict := pb.Verdict(r.Verdict)
	if verdict == pb.Verdict_VERDICT_INCONCLUSIVE {
		return nil
	}
	st, err := proof.Verify(key, pr.GetEvidence().GetStatement())
	probeOK := err == nil && len(pr.GetNonce()) > 0 && string(st.Nonce) == string(pr.GetNonce()) &&
		st.Time.Sub(r.MeasuredAt).Abs() <= statementWindow
	switch {
	case verdict == pb.Verdict_VERDICT_OPEN && !probeOK:
		return fmt.Errorf("%w: result %s (port %d) is OPEN without the reference MTA's signed statement for its nonce, made within %s of it",
			ErrInvalid, pr.GetResultId(), pr.GetPort(), statementWindow)
	case r.EgressSource == store.EgressControl, r.EgressSource == store.EgressStatement && probeOK:
		return nil
	}
	return fmt.Errorf("%w: result %s (port %d) is %s, but no statement signed by reference MTA %s (of its control port or of the probe, within %s of it) says where it was measured from",
		ErrInvalid, pr.GetResultId(), pr.GetPort(), verdict, pr.GetRefmtaId(), statementWindow)
}

// scheduleKeys are the keys of the schedule's reference MTAs.
type scheduleKeys map[string]ed25519.PublicKey

func (k scheduleKeys) RefMTAKey(id string) (ed25519.PublicKey, bool) {
	key, ok := k[id]
	return key, ok
}

// clipID shortens an id taken from a request for an error message.
func clipID(s string) string { return clip.Text(s, 64) }
