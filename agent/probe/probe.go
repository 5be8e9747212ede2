// Package probe is the agent's probe engine: it probes the SMTP ports and
// the control port of reference MTAs and turns each probe into one verdict,
// exactly as docs/methodology.md specifies: each attempt is decided on its
// own (decide.go), never calling a third party without positive evidence,
// and a verdict other than OPEN stands only when a repeat confirms it
// (confirm.go).
//
// A network failure is a measured outcome, never a Go error: it is a
// verdict with a stable failure string (see classify.go). Round returns an
// error only when the round itself could not run.
//
// The probe writes nothing but EHLO, STARTTLS and QUIT (see client.go), and
// every read is bounded in bytes (internal/smtpwire) and, through one
// deadline per attempt that follows the path's round-trip time, in time;
// Config.RoundBound bounds a whole round.
package probe

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	"github.com/op25b/observatory/internal/verdict"
)

// Defaults of Config; docs/methodology.md explains each.
const (
	// DefaultTimeout is the floor of every attempt's deadline and the time
	// a connection attempt is given (four SYNs, at 0, 1, 3 and 7 s, on a
	// path with a round-trip time of up to 3 s).
	DefaultTimeout = 10 * time.Second
	// DefaultMaxTimeout is the ceiling of an attempt's deadline, however
	// slow the path.
	DefaultMaxTimeout = 30 * time.Second
	// DefaultAttempts is the most attempts of one port probe: a non-OPEN
	// verdict needs two that agree.
	DefaultAttempts = 3
	// DefaultBackoff is the wait before the first repeat; it doubles for
	// each further one, triples when the reference MTA said it was busy,
	// and is jittered by ±50%.
	DefaultBackoff = time.Second
)

// Constants of the adaptive deadlines and of confirmation.
const (
	// RTTFactor: an attempt's deadline is RTTFactor round trips (the
	// slower of the control probe's connect time and its own), between
	// Timeout and MaxTimeout. A STARTTLS dialog takes about 6 round trips;
	// the rest is room for retransmissions.
	RTTFactor = 16
	// ShortConnect bounds the connection attempts of ports whose control
	// probe got no connection at all: the line is likely offline, and the
	// round should not wait Timeout again for every port.
	ShortConnect = 3 * time.Second
	// ConfirmDials connections are dialled at once by an attempt that
	// confirms a connection timeout, so that random loss of SYNs cannot
	// pass for a block.
	ConfirmDials = 3
	// busyFactor lengthens the backoff after our own refusal.
	busyFactor = 3
)

// Target is one address of a reference MTA; an address has one family, so
// a reference MTA reachable over IPv4 and IPv6 is two targets.
type Target struct {
	// RefMTA is the reference MTA's id, copied into results.
	RefMTA      string
	Key         ed25519.PublicKey
	Addr        netip.Addr
	Ports       []Port
	ControlPort uint16
}

// Port is an SMTP port and how it is spoken.
type Port struct {
	Number uint16
	// ImplicitTLS is true for submission over TLS (RFC 8314, port 465);
	// otherwise the dialog is plaintext with STARTTLS (RFC 3207).
	ImplicitTLS bool
}

// StandardPorts returns the ports numbered nums, each spoken as IANA assigns
// it: implicit TLS on 465, STARTTLS on any other port.
func StandardPorts(nums ...uint16) []Port {
	ports := make([]Port, len(nums))
	for i, n := range nums {
		ports[i] = Port{Number: n, ImplicitTLS: n == 465}
	}
	return ports
}

// Family is an address family; IPv4 and IPv6 results are never mixed.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of a, treating IPv4-mapped IPv6 as IPv4.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// Config configures a round. The zero value is usable.
type Config struct {
	// Timeout is the floor of each attempt's deadline (from the first SYN
	// to the last byte) and bounds its connection attempt (default
	// DefaultTimeout).
	Timeout time.Duration
	// MaxTimeout is the ceiling of an attempt's deadline on a slow path
	// (default DefaultMaxTimeout, raised to Timeout if lower).
	MaxTimeout time.Duration
	// Attempts is the most attempts of one port probe (default
	// DefaultAttempts); 1 turns confirmation off.
	Attempts int
	// Backoff is the wait before the first repeat (default DefaultBackoff).
	Backoff time.Duration
	// Now stamps results (default time.Now). Durations are measured on the
	// monotonic clock regardless, since deadlines are real time.
	Now func() time.Time
	// Progress, if set, is told when each probe starts and ends. Calls are
	// serialized, so it need not be safe for concurrent use.
	Progress func(Event)
	Logger   *slog.Logger
}

// Event reports the progress of a round.
type Event struct {
	RefMTA  string
	Addr    netip.Addr
	Port    uint16
	Control bool // the control probe of Addr
	Done    bool // false when the probe starts
	// Attempt counts the attempts of the probe, from 1; a start event
	// with Attempt > 1 is a repeat.
	Attempt int
	// Verdict is the outcome of a finished port probe; control probes have
	// none.
	Verdict verdict.Verdict
	// Failure is why a finished probe did not reach the reference MTA
	// unmodified; empty for OPEN and for a control probe that answered.
	Failure string
}

// Result is the outcome of one port probe: its conclusion, and every
// attempt that led to it.
type Result struct {
	ID      string // UUIDv7
	RefMTA  string
	Addr    netip.Addr
	Port    uint16
	Family  Family
	Verdict verdict.Verdict
	// Failure is the stable failure class of docs/methodology.md; empty
	// for OPEN.
	Failure string
	// Detail explains the verdict in one sentence, without addresses.
	Detail  string
	Started time.Time
	// Phase, Timings, Evidence, TLS and Nonce are those of the attempt
	// that decided the verdict (Attempts[Decided]).
	Phase   string
	Timings Timings
	// Evidence is from the first EHLO reply of the dialog (the plaintext
	// one on STARTTLS ports), where a path can strip or forge.
	Evidence Evidence
	// TLS is nil when no TLS handshake completed.
	TLS     *TLS
	Nonce   []byte
	Control Control
	// Attempts are every attempt, in order; Decided indexes the one the
	// fields above describe.
	Attempts []Attempt
	Decided  int
}

// Attempt is one attempt of a probe: one connection with a fresh nonce
// (or ConfirmDials of them dialled at once, the first to connect used),
// and what it alone showed.
type Attempt struct {
	Verdict verdict.Verdict
	Failure string
	Detail  string
	// Phase is where the dialog ended (Phase* constants).
	Phase   string
	Started time.Time
	// Deadline is the attempt's deadline from its first SYN, as adapted
	// to the path.
	Deadline time.Duration
	Dials    int
	Timings  Timings
	Evidence Evidence
	TLS      *TLS
	Nonce    []byte
}

// Timings of the phases of a probe; zero for a phase that did not
// complete.
type Timings struct {
	Connect      time.Duration
	Banner       time.Duration // from connected (or TLS established) to the banner
	EHLO         time.Duration // first EHLO sent to its reply
	TLSHandshake time.Duration
	Total        time.Duration
}

// Evidence is what the probe saw, kept so that a verdict can be audited.
// Text from the network is bounded and made valid UTF-8.
type Evidence struct {
	// Banner is the greeting as received, at most smtpwire.MaxBannerRecord
	// bytes; when the greeting was not SMTP, the first bytes received.
	Banner       string
	Capabilities []string // EHLO keywords received, the proof line excluded
	Statement    string   // the proof token as received
	// ProofValid is true when every statement of the dialog that arrived
	// verified for our nonce and port and served the session.
	ProofValid bool
	ProofError string
	// ObservedSource and SignedCapabilities come from a statement whose
	// signature verified; zero otherwise.
	ObservedSource     netip.Addr
	SignedCapabilities []string
	STARTTLSOffered    bool
}

// TLS describes the TLS session of a probe (STARTTLS or implicit).
type TLS struct {
	Version     uint16 // crypto/tls version number
	CipherSuite uint16
	// CertificateSHA256 is the hex SHA-256 of the leaf certificate.
	CertificateSHA256 string
	// PinValid is true when the leaf certificate carries the reference
	// MTA's key.
	PinValid bool
	// What the leaf certificate says of itself, kept so that a foreign
	// one can be told from ours by more than its key: an interceptor
	// may copy our subject, not our issuer.
	Subject, Issuer     string
	SANs                []string // bounded
	NotBefore, NotAfter time.Time
	// ChainSHA256 is the hex SHA-256 of every certificate presented, leaf
	// first, bounded.
	ChainSHA256 []string
}

// Control is the outcome of the control probe of one target, which tells
// "blocked" from "no connectivity".
type Control struct {
	Reached bool
	Failure string
	// ObservedSource is the agent's egress address as the reference MTA saw
	// it.
	ObservedSource netip.Addr
	// ServedPorts are the SMTP ports the reference MTA signed that it
	// serves.
	ServedPorts []uint16
	RTT         time.Duration // TCP connect time of the attempt that reached it
	Port        uint16
	// Attempts made on the control port.
	Attempts int
	// Statement is the reference MTA's signed statement, encoded, so that
	// the collector can verify the egress address rather than trust it.
	Statement string
}

// Round probes every target: first its control port, then its ports
// concurrently. Targets are probed concurrently. Results come in the order
// of targets and ports.
//
// The error is non-nil only when the round could not run: invalid targets,
// or ctx ended before the round did (its results are then discarded, since
// probes cut short measured nothing).
func Round(ctx context.Context, cfg Config, targets []Target) ([]Result, error) {
	for _, t := range targets {
		if err := t.validate(); err != nil {
			return nil, err
		}
	}
	r := newRunner(cfg)
	results := make([][]Result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = r.target(ctx, t) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probe: round: %w", err)
	}
	return slices.Concat(results...), nil
}

func (t Target) validate() error {
	switch {
	case !t.Addr.IsValid():
		return fmt.Errorf("probe: target %q: no address", t.RefMTA)
	case len(t.Key) != ed25519.PublicKeySize:
		return fmt.Errorf("probe: target %q: no Ed25519 public key", t.RefMTA)
	case t.ControlPort == 0:
		return fmt.Errorf("probe: target %q: no control port", t.RefMTA)
	case len(t.Ports) == 0:
		return fmt.Errorf("probe: target %q: no ports", t.RefMTA)
	}
	for _, p := range t.Ports {
		if p.Number == 0 {
			return fmt.Errorf("probe: target %q: port 0", t.RefMTA)
		}
	}
	return nil
}

// runner runs the probes of one round.
type runner struct {
	cfg Config
	mu  sync.Mutex // serializes cfg.Progress
}

func newRunner(cfg Config) *runner {
	return &runner{cfg: cfg.withDefaults()}
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultMaxTimeout
	}
	c.MaxTimeout = max(c.MaxTimeout, c.Timeout)
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// RoundBound is the longest a round can take with c, however the path and
// the servers behave: targets are probed concurrently, and for each the
// control probe (two attempts at most) comes before its ports (probed
// concurrently, Attempts each), every attempt within MaxTimeout and every
// wait at most the longest backoff.
func (c Config) RoundBound() time.Duration {
	c = c.withDefaults()
	bound := 2*c.MaxTimeout + maxBackoff(c.Backoff, 1)
	bound += time.Duration(c.Attempts) * c.MaxTimeout
	for i := 1; i < c.Attempts; i++ {
		bound += maxBackoff(c.Backoff, i)
	}
	return bound
}

func (r *runner) progress(e Event) {
	if r.cfg.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.Progress(e)
}

func (r *runner) target(ctx context.Context, t Target) []Result {
	ctl, plan := r.control(ctx, t)
	results := make([]Result, len(t.Ports))
	var wg sync.WaitGroup
	for i, p := range t.Ports {
		wg.Go(func() { results[i] = r.port(ctx, t, p, ctl, plan) })
	}
	wg.Wait()
	return results
}

// plan is how the attempts of one probe are made.
type plan struct {
	connect  time.Duration // budget of the connection attempt
	rtt      time.Duration // the path's round-trip time as known before dialling
	attempts int
}

// control runs the control probe of t: implicit TLS to the control port,
// pinned to the reference MTA's key, and a statement for our nonce that
// tells our egress address and the ports served. A second attempt follows
// a failure that may pass (a stall, a lost connection, our refusal); a
// connection attempt that timed out is not repeated, and the ports are then
// probed once with ShortConnect, so that an offline line costs Timeout
// once, not once per port.
func (r *runner) control(ctx context.Context, t Target) (Control, plan) {
	p := plan{connect: r.cfg.Timeout, attempts: r.cfg.Attempts}
	c := Control{Port: t.ControlPort}
	for i := 1; i <= 2; i++ {
		if i > 1 && !sleep(ctx, r.backoff(1, c.Failure == FailureRefMTABusy)) {
			break
		}
		r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: t.ControlPort, Control: true, Attempt: i})
		o := r.dialog(ctx, t, Port{Number: t.ControlPort, ImplicitTLS: true}, newNonce(), r.cfg.Timeout, 0, 1)
		c.Attempts = i
		c.Failure = controlFailure(o)
		if c.Failure == "" {
			c.Reached = true
			c.RTT = o.timings.Connect
			c.ObservedSource = o.first.st.Source
			c.ServedPorts = o.first.st.Ports
			c.Statement = o.first.token
			p.rtt = c.RTT
			break
		}
		if o.dialErr != nil && c.Failure == FailureTimeout {
			p.connect, p.attempts = min(ShortConnect, r.cfg.Timeout), 1
		}
		if !slices.Contains([]string{FailureDeadline, FailureConnectionLost, FailureRefMTABusy}, c.Failure) {
			break
		}
	}
	r.cfg.Logger.Debug("control probe done", "refmta", t.RefMTA, "addr", t.Addr, "port", t.ControlPort,
		"reached", c.Reached, "failure", c.Failure, "attempts", c.Attempts)
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: t.ControlPort, Control: true, Done: true, Failure: c.Failure, Attempt: c.Attempts})
	return c, p
}

// port runs the attempts of one SMTP port probe and concludes its verdict.
func (r *runner) port(ctx context.Context, t Target, p Port, ctl Control, pl plan) Result {
	started := r.cfg.Now()
	var attempts []Attempt
	for i := 1; i <= pl.attempts; i++ {
		dials := 1
		if i > 1 {
			prev := attempts[len(attempts)-1]
			if !sleep(ctx, r.backoff(i-1, prev.Failure == FailureRefMTABusy)) {
				break
			}
			if prev.Failure == FailureTimeout && prev.Phase == PhaseConnect {
				dials = ConfirmDials
			}
		}
		r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: p.Number, Attempt: i})
		a := Attempt{Started: r.cfg.Now(), Nonce: newNonce(), Dials: dials}
		o := r.dialog(ctx, t, p, a.Nonce, pl.connect, pl.rtt, dials)
		out := decide(o, p.Number, ctl)
		a.Verdict, a.Failure, a.Detail = out.verdict, out.failure, out.detail
		a.Phase, a.Deadline, a.Timings, a.Evidence, a.TLS = o.phase, o.deadline, o.timings, o.evidence(), o.tls
		attempts = append(attempts, a)
		// Without the control port no repeat can make a refused or
		// unreachable port blocked (an IPv4-only line's IPv6, say).
		offline := o.dialErr != nil && !ctl.Reached && a.Failure != FailureTimeout
		if settled(attempts, r.need()) || offline || ctx.Err() != nil {
			break
		}
	}
	d, out := conclude(attempts, r.need())
	a := attempts[d]
	res := Result{
		ID:       uuidv7.New(started),
		RefMTA:   t.RefMTA,
		Addr:     t.Addr,
		Port:     p.Number,
		Family:   FamilyOf(t.Addr),
		Verdict:  out.verdict,
		Failure:  out.failure,
		Detail:   out.detail,
		Started:  started,
		Phase:    a.Phase,
		Timings:  a.Timings,
		Evidence: a.Evidence,
		TLS:      a.TLS,
		Nonce:    a.Nonce,
		Control:  ctl,
		Attempts: attempts,
		Decided:  d,
	}
	r.cfg.Logger.Debug("probe done", "refmta", t.RefMTA, "addr", t.Addr, "port", p.Number,
		"verdict", res.Verdict, "failure", res.Failure, "attempts", len(attempts))
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: p.Number, Done: true, Verdict: res.Verdict, Failure: res.Failure, Attempt: len(attempts)})
	return res
}

// need is how many attempts must agree on a non-OPEN verdict.
func (r *runner) need() int { return min(2, r.cfg.Attempts) }

// backoff is the wait before repeat i (from 1): Backoff doubled for each
// further repeat, tripled after our own refusal, jittered by ±50% so that
// the agents a refusal turned away do not come back together.
func (r *runner) backoff(i int, busy bool) time.Duration {
	d := r.cfg.Backoff << (i - 1)
	if busy {
		d *= busyFactor
	}
	return d/2 + rand.N(d)
}

// maxBackoff is the longest backoff before repeat i.
func maxBackoff(base time.Duration, i int) time.Duration {
	d := base << (i - 1) * busyFactor
	return d/2 + d
}

// sleep waits d, or less if ctx ends first; it reports whether the wait
// ran its course.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func newNonce() []byte {
	n := make([]byte, proof.NonceLen)
	_, _ = crand.Read(n) // crypto/rand.Read never fails (Go 1.24+)
	return n
}
