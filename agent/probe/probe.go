// Package probe is the agent's probe engine: it probes the SMTP ports and
// the control port of reference MTAs and turns each probe into one verdict,
// exactly as docs/methodology.md specifies.
//
// A network failure is a measured outcome, never a Go error: it is a
// verdict with a stable failure string (see classify.go). Round returns an
// error only when the round itself could not run.
//
// The probe writes nothing but EHLO, STARTTLS and QUIT (see client.go), and
// every read is bounded in bytes (internal/smtpwire) and, through one
// deadline per probe, in time.
package probe

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/uuidv7"
	"github.com/op25b/observatory/internal/verdict"
)

// DefaultTimeout bounds one probe when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

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
	// Timeout bounds each probe from the first SYN to the last byte
	// (default DefaultTimeout).
	Timeout time.Duration
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
	// Verdict is the outcome of a finished port probe; control probes have
	// none.
	Verdict verdict.Verdict
	// Failure is why a finished probe did not reach the reference MTA
	// unmodified; empty for OPEN and for a control probe that answered.
	Failure string
}

// Result is the outcome of one port probe.
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
	Timings Timings
	// Evidence is from the first EHLO reply of the dialog (the plaintext
	// one on STARTTLS ports), where a path can strip or forge.
	Evidence Evidence
	// TLS is nil when no TLS handshake completed.
	TLS     *TLS
	Nonce   []byte
	Control Control
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
	// ProofValid is true when every statement of the dialog verified for
	// our nonce and port.
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
	Subject  string
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
	RTT         time.Duration // TCP connect time
	Port        uint16
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
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &runner{cfg: cfg}
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
	ctl := r.control(ctx, t)
	results := make([]Result, len(t.Ports))
	var wg sync.WaitGroup
	for i, p := range t.Ports {
		wg.Go(func() { results[i] = r.port(ctx, t, p, ctl) })
	}
	wg.Wait()
	return results
}

// control runs the control probe of t: implicit TLS to the control port,
// pinned to the reference MTA's key, and a statement for our nonce that
// tells our egress address and the ports served.
func (r *runner) control(ctx context.Context, t Target) Control {
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: t.ControlPort, Control: true})
	nonce := newNonce()
	o := r.dialog(ctx, t, Port{Number: t.ControlPort, ImplicitTLS: true}, nonce)
	c := Control{Port: t.ControlPort, RTT: o.timings.Connect}
	c.Failure = controlFailure(o)
	if c.Failure == "" {
		c.Reached = true
		c.ObservedSource = o.first.st.Source
		c.ServedPorts = o.first.st.Ports
		c.Statement = o.first.token
	}
	r.cfg.Logger.Debug("control probe done", "refmta", t.RefMTA, "addr", t.Addr, "port", t.ControlPort,
		"reached", c.Reached, "failure", c.Failure)
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: t.ControlPort, Control: true, Done: true, Failure: c.Failure})
	return c
}

// port runs the probe of one SMTP port and decides its verdict.
func (r *runner) port(ctx context.Context, t Target, p Port, ctl Control) Result {
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: p.Number})
	started := r.cfg.Now()
	nonce := newNonce()
	o := r.dialog(ctx, t, p, nonce)
	out := decide(o, p.Number, ctl, r.cfg.Timeout)
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
		Timings:  o.timings,
		Evidence: o.evidence(),
		TLS:      o.tls,
		Nonce:    nonce,
		Control:  ctl,
	}
	r.cfg.Logger.Debug("probe done", "refmta", t.RefMTA, "addr", t.Addr, "port", p.Number,
		"verdict", res.Verdict, "failure", res.Failure)
	r.progress(Event{RefMTA: t.RefMTA, Addr: t.Addr, Port: p.Number, Done: true, Verdict: res.Verdict, Failure: res.Failure})
	return res
}

func newNonce() []byte {
	n := make([]byte, proof.NonceLen)
	_, _ = rand.Read(n) // crypto/rand.Read never fails (Go 1.24+)
	return n
}
