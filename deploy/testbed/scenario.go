package testbed

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/op25b/observatory/agent/probe"
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

// Probe is one row of a scenario: a port in one address family.
type Probe struct {
	Port   uint16
	Family Family
}

// PerFamily is the verdict expected on one port in each family.
type PerFamily struct {
	IPv4, IPv6 verdict.Verdict
}

// Expect maps every port of Ports to its expected verdicts.
type Expect map[uint16]PerFamily

// Want returns the verdict expected for p.
func (e Expect) Want(p Probe) verdict.Verdict {
	if p.Family == IPv6 {
		return e[p.Port].IPv6
	}
	return e[p.Port].IPv4
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
// it runs, and the verdicts an agent behind it must report.
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
	Expect      Expect
}

// The ports our middleboxes listen on behind nft redirects. They are apart
// from everything the reference MTA serves so that a rule that misses sends
// traffic nowhere rather than to the wrong server.
const (
	stripPort = 10025
	mitmPort  = 10465
)

// Scenarios is the testbed: one emulated ISP per entry, each exercising one
// verdict of docs/methodology.md, together producing every verdict. The
// expectations are the methodology applied to the policy, not what some
// agent version happens to print.
var Scenarios = []Scenario{
	{
		Name: "open",
		Doc:  "an ISP that filters nothing",
		Expect: Expect{
			25:  {verdict.Open, verdict.Open},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name:    "drop25",
		Doc:     "OP25B by silent drop: tcp/25 reaches only the ISP's own relay",
		Forward: []string{"tcp dport 25 counter drop"},
		// The relay is the exception OP25B leaves: it lives on the router,
		// so the forward chain never sees customers' traffic to it.
		Middleboxes: []Middlebox{{Mode: ModeRelay, Port: 25, Hostname: "relay.isp-b.example"}},
		Expect: Expect{
			25:  {verdict.BlockedTimeout, verdict.BlockedTimeout},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name:    "reset25",
		Doc:     "OP25B by TCP reset of tcp/25",
		Forward: []string{"tcp dport 25 counter reject with tcp reset"},
		Expect: Expect{
			25:  {verdict.BlockedReset, verdict.BlockedReset},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name: "icmp25",
		Doc:  "OP25B by ICMP administratively prohibited for tcp/25",
		Forward: []string{
			"meta nfproto ipv4 tcp dport 25 counter reject with icmp type admin-prohibited",
			"meta nfproto ipv6 tcp dport 25 counter reject with icmpv6 type admin-prohibited",
		},
		Expect: Expect{
			25:  {verdict.BlockedUnreachable, verdict.BlockedUnreachable},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name: "redirect25",
		Doc:  "tcp/25 transparently redirected to the ISP's own relay",
		// A redirect without a port keeps 25 and lands on the router's
		// address on the customer link, where the relay listens.
		Prerouting:  []string{"tcp dport 25 counter redirect"},
		Middleboxes: []Middlebox{{Mode: ModeRelay, Port: 25, Hostname: "relay.isp-e.example"}},
		Expect: Expect{
			25:  {verdict.Intercepted, verdict.Intercepted},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name:        "strip-starttls",
		Doc:         "a proxy on tcp/25 removes STARTTLS from EHLO replies",
		Prerouting:  []string{fmt.Sprintf("tcp dport 25 counter redirect to :%d", stripPort)},
		Middleboxes: []Middlebox{{Mode: ModeStrip, Port: stripPort}},
		Expect: Expect{
			25:  {verdict.Tampered, verdict.Tampered},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name:        "mitm465",
		Doc:         "TLS interception of tcp/465 with the proxy's own certificate",
		Prerouting:  []string{fmt.Sprintf("tcp dport 465 counter redirect to :%d", mitmPort)},
		Middleboxes: []Middlebox{{Mode: ModeMITM, Port: mitmPort, Hostname: "mitm.isp-g.example"}},
		Expect: Expect{
			25:  {verdict.Open, verdict.Open},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Tampered, verdict.Tampered},
		},
	},
	{
		Name:    "v4-only-block",
		Doc:     "tcp/25 reset on IPv4 only, IPv6 left open (the gap ISPs miss)",
		Forward: []string{"meta nfproto ipv4 tcp dport 25 counter reject with tcp reset"},
		Expect: Expect{
			25:  {verdict.BlockedReset, verdict.Open},
			587: {verdict.Open, verdict.Open},
			465: {verdict.Open, verdict.Open},
		},
	},
	{
		Name:    "all-smtp-blocked",
		Doc:     "25, 587 and 465 all reset; the control port still open",
		Forward: []string{"tcp dport { 25, 465, 587 } counter reject with tcp reset"},
		Expect: Expect{
			25:  {verdict.BlockedReset, verdict.BlockedReset},
			587: {verdict.BlockedReset, verdict.BlockedReset},
			465: {verdict.BlockedReset, verdict.BlockedReset},
		},
	},
	{
		Name: "offline",
		Doc:  "no upstream connectivity: the router drops everything customers send",
		// Without the control port nothing may be called blocked.
		Forward: []string{"counter drop"},
		Expect: Expect{
			25:  {verdict.Inconclusive, verdict.Inconclusive},
			587: {verdict.Inconclusive, verdict.Inconclusive},
			465: {verdict.Inconclusive, verdict.Inconclusive},
		},
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
