package testbed

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/deploy/testbed/impair"
	"github.com/op25b/observatory/internal/verdict"
)

// Family is an address family, probed and expected separately: the
// probe engine's own type.
type Family = probe.Family

// The two families of every scenario.
const (
	IPv4 = probe.IPv4
	IPv6 = probe.IPv6
)

// Families lists the families in table order.
var Families = []Family{IPv4, IPv6}

// Ports are the SMTP ports every scenario expects a verdict for, in table
// order. The control port (443) is the reference MTA's default and is never
// filtered unless a scenario says so.
var Ports = []uint16{25, 587, 465}

// RefMTA names one of the testbed's reference MTAs.
type RefMTA string

// The reference MTAs, each started only when a scenario of the run probes
// it.
const (
	// MainMTA is the reference MTA in the core, in its own network
	// (AS64500), with its default limits.
	MainMTA RefMTA = "main"
	// FarMTA is a second reference MTA in another network (AS64501), whose
	// upstream router drops inbound tcp/25: a fault near a reference MTA
	// that must not be charged to the agents' networks.
	FarMTA RefMTA = "far"
	// BusyMTA runs beside MainMTA with a tiny session limit that a hog
	// process keeps full, so that it refuses every session.
	BusyMTA RefMTA = "busy"
)

// RefMTAs lists the reference MTAs in table order.
var RefMTAs = []RefMTA{MainMTA, FarMTA, BusyMTA}

// Probe is one row of a scenario: a port of a reference MTA in one address
// family.
type Probe struct {
	RefMTA RefMTA
	Port   uint16
	Family Family
}

// PerFamily is the verdict expected on one port in each family.
type PerFamily struct {
	IPv4, IPv6 verdict.Verdict
}

// PortVerdicts maps every port of Ports to its expected verdicts.
type PortVerdicts map[uint16]PerFamily

// same expects the verdicts of 25, 587 and 465 in both families.
func same(v25, v587, v465 verdict.Verdict) PortVerdicts {
	return PortVerdicts{25: {v25, v25}, 587: {v587, v587}, 465: {v465, v465}}
}

// Expect maps each reference MTA a scenario's agents probe to the verdicts
// they must report for it. The agents probe exactly these.
type Expect map[RefMTA]PortVerdicts

// Want returns the verdict expected for p.
func (e Expect) Want(p Probe) verdict.Verdict {
	if p.Family == IPv6 {
		return e[p.RefMTA][p.Port].IPv6
	}
	return e[p.RefMTA][p.Port].IPv4
}

// RefMTAs returns the reference MTAs e expects verdicts for, in table
// order.
func (e Expect) RefMTAs() []RefMTA {
	var out []RefMTA
	for _, m := range RefMTAs {
		if _, ok := e[m]; ok {
			out = append(out, m)
		}
	}
	return out
}

// Probes returns the rows of e in table order: reference MTA, port, family.
func (e Expect) Probes() []Probe {
	var out []Probe
	for _, m := range e.RefMTAs() {
		for _, port := range Ports {
			for _, fam := range Families {
				out = append(out, Probe{RefMTA: m, Port: port, Family: fam})
			}
		}
	}
	return out
}

// Middlebox modes, as `op25b-testbed middlebox --mode` takes them.
const (
	ModeRelay = "relay"
	ModeStrip = "strip"
	ModeMITM  = "mitm"
)

// Middlebox is a process a scenario runs in its ISP router's namespace
// (package middlebox), listening on Port of both families.
type Middlebox struct {
	Mode string
	Port uint16
	// Hostname is the relay's banner name or the mitm certificate's
	// subject; the stripper has none of its own.
	Hostname string
}

// Scenario is one emulated ISP: the policy of its router, the middleboxes
// it runs, the link to its upstream, its customers, and the verdicts an
// agent behind it must report.
//
// A scenario with an impaired Link or several Agents is noisy: its agents
// run with the agent's own default --timeout rather than the run's (fast)
// one, as a volunteer's would, and an INCONCLUSIVE where a conclusive
// verdict is expected passes, reported as tolerated; any other verdict
// than the expected one fails. An INCONCLUSIVE is a measurement that could
// not tell, not a false one; the validity benchmark counts how many there
// are.
type Scenario struct {
	Name string
	Doc  string
	// Forward are nftables rules of the router's forward filter chain and
	// Prerouting those of its dstnat chain. Both only ever see traffic that
	// enters from the customer link: the generated ruleset prefixes every
	// rule with the customer interface match. Rules carry a counter, which
	// the report of a failing scenario shows.
	Forward     []string
	Prerouting  []string
	Middleboxes []Middlebox
	// Link, if set, impairs the link between the router and transit, the
	// same way in both directions (package impair).
	Link *impair.Shape
	// Agents is how many agent processes run at once in one agent
	// namespace, all with the same source address (default 1): more is a
	// carrier-grade NAT.
	Agents int
	Expect Expect
	// Failure, if set, is the failure class every row that gets its
	// expected verdict must also carry, when that verdict is not OPEN.
	Failure string
	// Baseline names the scenario with the same filtering and nothing else
	// (no impairment, one agent, the main reference MTA). The validity
	// benchmark runs every scenario that has one, with its baseline, and
	// shows the baseline's round duration in the same run as the limit.
	Baseline string
}

// Noisy reports whether the scenario tolerates INCONCLUSIVE rows and runs
// its agents with their default timeout (see Scenario).
func (s Scenario) Noisy() bool { return s.Link != nil || s.Agents > 1 }

// agents returns the number of agent processes of one round.
func (s Scenario) agents() int { return max(s.Agents, 1) }

// The ports our middleboxes listen on behind nft redirects. They are apart
// from everything the reference MTA serves so that a rule that misses sends
// traffic nowhere rather than to the wrong server.
const (
	stripPort = 10025
	mitmPort  = 10465
)

// The impaired links of the scenarios. Jitter is a few percent of the
// delay: enough for packets of a burst to overtake each other.
var (
	lossy20      = impair.Shape{Loss: 0.2}
	rtt600       = impair.Shape{Delay: 300 * time.Millisecond, Jitter: 10 * time.Millisecond}
	rtt1500      = impair.Shape{Delay: 750 * time.Millisecond, Jitter: 25 * time.Millisecond}
	rtt1500Lossy = impair.Shape{Delay: 750 * time.Millisecond, Jitter: 25 * time.Millisecond, Loss: 0.1}
)

// CGNATAgents is how many agents share one address in the cgnat scenario.
const CGNATAgents = 100

// Scenarios is the testbed: one emulated ISP per entry. The first ten
// exercise one verdict of docs/methodology.md each, together producing
// every verdict; the others put the measurement under conditions that must
// not produce false verdicts (loss, latency, many agents behind one
// address, our own refusals, a fault near a reference MTA). The
// expectations are the methodology applied to the policy, not what some
// agent version happens to print.
var Scenarios = []Scenario{
	{
		Name:   "open",
		Doc:    "an ISP that filters nothing",
		Expect: Expect{MainMTA: same(verdict.Open, verdict.Open, verdict.Open)},
	},
	{
		Name:    "drop25",
		Doc:     "OP25B by silent drop: tcp/25 reaches only the ISP's own relay",
		Forward: []string{"tcp dport 25 counter drop"},
		// The relay is the exception OP25B leaves: it lives on the router,
		// so the forward chain never sees customers' traffic to it.
		Middleboxes: []Middlebox{{Mode: ModeRelay, Port: 25, Hostname: "relay.isp-b.example"}},
		Expect:      Expect{MainMTA: same(verdict.BlockedTimeout, verdict.Open, verdict.Open)},
	},
	{
		Name:    "reset25",
		Doc:     "OP25B by TCP reset of tcp/25",
		Forward: []string{"tcp dport 25 counter reject with tcp reset"},
		Expect:  Expect{MainMTA: same(verdict.BlockedReset, verdict.Open, verdict.Open)},
	},
	{
		Name: "icmp25",
		Doc:  "OP25B by ICMP administratively prohibited for tcp/25",
		Forward: []string{
			"meta nfproto ipv4 tcp dport 25 counter reject with icmp type admin-prohibited",
			"meta nfproto ipv6 tcp dport 25 counter reject with icmpv6 type admin-prohibited",
		},
		Expect: Expect{MainMTA: same(verdict.BlockedUnreachable, verdict.Open, verdict.Open)},
	},
	{
		Name: "redirect25",
		Doc:  "tcp/25 transparently redirected to the ISP's own relay",
		// A redirect without a port keeps 25 and lands on the router's
		// address on the customer link, where the relay listens.
		Prerouting:  []string{"tcp dport 25 counter redirect"},
		Middleboxes: []Middlebox{{Mode: ModeRelay, Port: 25, Hostname: "relay.isp-e.example"}},
		Expect:      Expect{MainMTA: same(verdict.Intercepted, verdict.Open, verdict.Open)},
	},
	{
		Name:        "strip-starttls",
		Doc:         "a proxy on tcp/25 removes STARTTLS from EHLO replies",
		Prerouting:  []string{fmt.Sprintf("tcp dport 25 counter redirect to :%d", stripPort)},
		Middleboxes: []Middlebox{{Mode: ModeStrip, Port: stripPort}},
		Expect:      Expect{MainMTA: same(verdict.Tampered, verdict.Open, verdict.Open)},
	},
	{
		Name:        "mitm465",
		Doc:         "TLS interception of tcp/465 with the proxy's own certificate",
		Prerouting:  []string{fmt.Sprintf("tcp dport 465 counter redirect to :%d", mitmPort)},
		Middleboxes: []Middlebox{{Mode: ModeMITM, Port: mitmPort, Hostname: "mitm.isp-g.example"}},
		Expect:      Expect{MainMTA: same(verdict.Open, verdict.Open, verdict.Tampered)},
	},
	{
		Name:    "v4-only-block",
		Doc:     "tcp/25 reset on IPv4 only, IPv6 left open (the gap ISPs miss)",
		Forward: []string{"meta nfproto ipv4 tcp dport 25 counter reject with tcp reset"},
		Expect: Expect{MainMTA: {
			25:  {verdict.BlockedReset, verdict.Open},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		}},
	},
	{
		Name:    "all-smtp-blocked",
		Doc:     "25, 587 and 465 all reset; the control port still open",
		Forward: []string{"tcp dport { 25, 465, 587 } counter reject with tcp reset"},
		Expect:  Expect{MainMTA: same(verdict.BlockedReset, verdict.BlockedReset, verdict.BlockedReset)},
	},
	{
		Name: "offline",
		Doc:  "no upstream connectivity: the router drops everything customers send",
		// Without the control port nothing may be called blocked.
		Forward: []string{"counter drop"},
		Expect:  Expect{MainMTA: same(verdict.Inconclusive, verdict.Inconclusive, verdict.Inconclusive)},
	},
	{
		Name:     "loss20",
		Doc:      "a lossy line: 20% of packets lost each way, nothing filtered",
		Link:     &lossy20,
		Expect:   Expect{MainMTA: same(verdict.Open, verdict.Open, verdict.Open)},
		Baseline: "open",
	},
	{
		Name:     "rtt600-drop25",
		Doc:      "OP25B by silent drop on a long path: 600 ms round trip",
		Forward:  []string{"tcp dport 25 counter drop"},
		Link:     &rtt600,
		Expect:   Expect{MainMTA: same(verdict.BlockedTimeout, verdict.Open, verdict.Open)},
		Baseline: "drop25",
	},
	{
		Name:     "rtt1500",
		Doc:      "a satellite path: 1.5 s round trip, nothing filtered",
		Link:     &rtt1500,
		Expect:   Expect{MainMTA: same(verdict.Open, verdict.Open, verdict.Open)},
		Baseline: "open",
	},
	{
		Name:     "rtt1500-loss10-drop25",
		Doc:      "OP25B by silent drop on a long lossy path: 1.5 s round trip, 10% loss each way",
		Forward:  []string{"tcp dport 25 counter drop"},
		Link:     &rtt1500Lossy,
		Expect:   Expect{MainMTA: same(verdict.BlockedTimeout, verdict.Open, verdict.Open)},
		Baseline: "drop25",
	},
	{
		Name:     "cgnat",
		Doc:      fmt.Sprintf("a carrier-grade NAT: %d agents at once behind one address, against the reference MTA's default limits", CGNATAgents),
		Agents:   CGNATAgents,
		Expect:   Expect{MainMTA: same(verdict.Open, verdict.Open, verdict.Open)},
		Baseline: "open",
	},
	{
		Name: "refmta-busy",
		Doc:  "our reference MTA saturated: a hog holds every session slot, so it refuses every session, verifiably",
		// Nothing is wrong with the ISP: the agent must say it could not
		// tell, and why.
		Expect:   Expect{BusyMTA: same(verdict.Inconclusive, verdict.Inconclusive, verdict.Inconclusive)},
		Failure:  "refmta_busy",
		Baseline: "open",
	},
	{
		Name: "two-refmtas",
		Doc:  "two reference MTAs in different networks; the far one's upstream drops inbound tcp/25",
		Expect: Expect{
			MainMTA: same(verdict.Open, verdict.Open, verdict.Open),
			FarMTA:  same(verdict.BlockedTimeout, verdict.Open, verdict.Open),
		},
		// Its rounds wait out a silent drop of tcp/25, as drop25's do.
		Baseline: "drop25",
	},
}

// Select returns the scenarios named, in table order, or all of them when
// names is empty.
func Select(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return Scenarios, nil
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var out []Scenario
	for _, s := range Scenarios {
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		unknown := slices.Sorted(maps.Keys(want))
		var known []string
		for _, s := range Scenarios {
			known = append(known, s.Name)
		}
		return nil, fmt.Errorf("testbed: unknown scenario %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// Ruleset returns the nftables ruleset of the scenario's ISP router, to be
// loaded with `nft -f -` in the router's namespace.
func (s Scenario) Ruleset() string {
	var b strings.Builder
	b.WriteString("table inet isp {\n")
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	for _, r := range s.Forward {
		fmt.Fprintf(&b, "\t\tiifname %q %s\n", custIf, r)
	}
	b.WriteString("\t}\n")
	if len(s.Prerouting) > 0 {
		b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
		for _, r := range s.Prerouting {
			fmt.Fprintf(&b, "\t\tiifname %q %s\n", custIf, r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
