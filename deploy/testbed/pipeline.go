package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CollectorBin is the binary the pipeline mode also needs in BinDir.
const CollectorBin = "op25b-collector"

// CLIBin is the researcher CLI, which the pipeline mode uses to print the
// per-ASN adoption table when it is in the bin directory.
const CLIBin = "op25b"

// collectorAddr is where the pipeline mode's collector listens, in the
// reference MTA's namespace: every ISP but the offline one reaches it.
const collectorPort = "8443"

// collectorHTTPPort is the port of the collector's web page, dataset API
// and one-off submissions, on the reference MTA's address: the ISPs'
// volunteers reach it there, the host through a forward.
const collectorHTTPPort = "9090"

// oneOffISP is the ISP a volunteer submits one `op25b-agent check --submit`
// round from, beside the daemons.
const oneOffISP = "drop25"

// Pipeline configures the pipeline mode: after the checks, the network
// runs for real until ctx is done (or Hold passes): a collector with its
// embedded PostgreSQL beside the main reference MTA, the main and the far
// reference MTAs uploading their sightings, and an `op25b-agent run`
// daemon behind every ISP, each ISP its own ASN; the per-ASN summary and adoption table are written to Summary
// every Every. The collector's web page and dataset API are forwarded to
// Web on the host (default 127.0.0.1:9090).
type Pipeline struct {
	Hold    time.Duration // 0: until ctx is done
	Every   time.Duration
	Summary io.Writer
	Web     string
}

// The ASNs of the reference MTAs' networks in the pipeline's ip2asn
// table: two networks, so that the collector can tell a fault near one
// reference MTA from the agents' networks.
const (
	mainMTAASN = 64500
	farMTAASN  = 64501
)

// asnTable writes the ip2asn table of the testbed: each ISP's customer
// network is one documentation ASN named after its scenario, and each
// reference MTA network one of its own.
func asnTable(path string, sites []site) (map[string]uint32, error) {
	var b strings.Builder
	row := func(p netip.Prefix, asn uint32, name string) {
		p = p.Masked()
		fmt.Fprintf(&b, "%s\t%s\t%d\tZZ\t%s\n", p.Addr(), lastAddr(p), asn, name)
	}
	for _, p := range mainNets {
		row(p, mainMTAASN, "OP25B-REFMTA-MAIN")
	}
	for _, p := range farNets {
		row(p, farMTAASN, "OP25B-REFMTA-FAR")
	}
	asns := map[string]uint32{}
	for _, s := range sites {
		asn := uint32(64510 + s.index)
		asns[s.scenario.Name] = asn
		v4, v6 := s.addrs(true, 0)
		for _, cidr := range []string{v4, v6} {
			row(netip.MustParsePrefix(cidr), asn, "ISP-"+strings.ToUpper(s.scenario.Name))
		}
	}
	return asns, os.WriteFile(path, []byte(b.String()), 0o644)
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				a[i] |= 0x80 >> j
			}
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// pipelineAgents is how many agent daemons run behind one ISP: one, or a
// few behind the carrier-grade NAT, all on its one address.
func pipelineAgents(sc Scenario) int { return min(sc.agents(), 5) }

// runPipeline runs the pipeline mode in bed b, whose close stops what it
// starts (the collector last).
func runPipeline(ctx context.Context, cfg Config, b *bed) error {
	p := cfg.Pipeline
	topo, log := b.topo, b.log
	if _, err := os.Stat(filepath.Join(b.binDir, CollectorBin)); err != nil {
		return fmt.Errorf("testbed: pipeline mode needs %s: %w", CollectorBin, err)
	}
	if p.Every == 0 {
		p.Every = 20 * time.Second
	}
	if p.Web == "" {
		p.Web = "127.0.0.1:9090"
	}
	web, err := net.Listen("tcp", p.Web)
	if err != nil {
		return fmt.Errorf("testbed: the web page's address on the host: %w", err)
	}
	collectorHTTP := net.JoinHostPort(MTAv4.String(), collectorHTTPPort)
	go forward(ctx, web, topo.mta, collectorHTTP, log)
	webURL := "http://" + web.Addr().String()
	asnFile := filepath.Join(b.stateDir, "testbed.ip2asn")
	asns, err := asnTable(asnFile, topo.sites)
	if err != nil {
		return err
	}
	// The busy reference MTA stays out of the schedule: it refuses
	// everything by design, and every daemon would probe it.
	var scheduled []RefMTA
	for _, m := range b.refmtaSet() {
		if m != BusyMTA {
			scheduled = append(scheduled, m)
		}
	}
	dataDir := filepath.Join(b.stateDir, "collector")
	col := filepath.Join(b.binDir, CollectorBin)
	addr := MTAv4.String() + ":" + collectorPort
	argv := []string{"ip", "netns", "exec", topo.mta, col,
		"--data-dir", dataDir, "--listen", addr, "--http-listen", collectorHTTP, "--tls-hosts", MTAv4.String(),
		"--asn", asnFile, "--interval", "30s", "--jitter", "10s", "--probe-timeout", "3s", "--log-level", "warn",
		// One agent per ISP: let one prefix decide a class, and publish fast.
		"--class-min-prefixes", "1", "--refresh-every", "10s", "--windows-every", "10s"}
	for _, m := range scheduled {
		argv = append(argv, "--refmta", b.identity(m))
	}
	collector, err := b.start(CollectorBin, argv...)
	if err != nil {
		return err
	}
	collector.grace = 45 * time.Second // stops after the others (stopChildren)
	ca := filepath.Join(dataDir, "tls", "ca.pem")
	if err := collector.waitFor(ctx, time.Minute, "its local CA", fileExists(ca)); err != nil {
		return err
	}
	inMTA := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", topo.mta, col}, args...)...).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return strings.TrimSpace(string(out)), err
	}
	if err := collector.waitFor(ctx, time.Minute, "listening", func() bool {
		_, err := inMTA("token", "list", "--data-dir", dataDir, "--log-level", "error")
		return err == nil
	}); err != nil {
		return err
	}
	rtok, err := inMTA("token", "create", "--data-dir", dataDir, "--kind", "refmta", "--uses", fmt.Sprint(len(scheduled)),
		"--label", "testbed reference MTAs", "--log-level", "error")
	if err != nil {
		return fmt.Errorf("testbed: refmta token: %w", err)
	}
	// Restart the scheduled reference MTAs (same keys) so that they upload
	// sightings.
	for _, m := range scheduled {
		b.refmtas[m].stop()
		r, err := b.start(RefMTABin+" "+string(m), b.refmtaArgv(m,
			"--collector", addr, "--collector-ca", ca, "--enroll", rtok, "--log-level", "warn")...)
		if err != nil {
			return err
		}
		b.refmtas[m] = r
	}
	daemons := 0
	for _, s := range topo.sites {
		daemons += pipelineAgents(s.scenario)
	}
	atok, err := inMTA("token", "create", "--data-dir", dataDir, "--kind", "agent", "--uses", fmt.Sprint(daemons),
		"--label", "testbed agents", "--log-level", "error")
	if err != nil {
		return fmt.Errorf("testbed: agent token: %w", err)
	}
	var agents []*child
	for _, s := range topo.sites {
		for k := range pipelineAgents(s.scenario) {
			label := s.scenario.Name
			if k > 0 {
				label += "-" + strconv.Itoa(k+1)
			}
			a, err := b.start("agent "+label, "ip", "netns", "exec", s.hosts[0], filepath.Join(b.binDir, AgentBin), "run",
				"--collector", addr, "--collector-ca", ca, "--enroll", atok, "--state-dir", filepath.Join(b.stateDir, "agent-"+label),
				"--label", label, "--log-level", "warn")
			if err != nil {
				return err
			}
			agents = append(agents, a)
		}
	}
	// An agent that exits says why: show it rather than a silent summary.
	defer func() {
		for _, a := range agents {
			if a.exited() {
				fmt.Fprintf(p.Summary, "%s exited (%v):\n%s\n", a.name, a.err, a.out.String())
			}
		}
	}()
	fmt.Fprintf(p.Summary, "\npipeline: collector %s (in namespace %s, CA %s), embedded PostgreSQL under %s; %d agents enrolled, one per ISP (%d behind the CGNAT):\n",
		addr, topo.mta, ca, filepath.Join(dataDir, "postgres"), daemons, pipelineAgents(Scenario{Agents: CGNATAgents}))
	for _, s := range topo.sites {
		fmt.Fprintf(p.Summary, "  AS%d ISP-%s\n", asns[s.scenario.Name], strings.ToUpper(s.scenario.Name))
	}
	for _, m := range scheduled {
		asn := mainMTAASN
		if m == FarMTA {
			asn = farMTAASN
		}
		v4, v6 := m.Addrs()
		fmt.Fprintf(p.Summary, "reference MTA %s at %s and %s in AS%d, uploading its sightings\n", m, v4, v6, asn)
	}
	fmt.Fprintf(p.Summary, "web page and dataset API: %s/ and %s/api/v1/asns (forwarded into namespace %s)\n", webURL, webURL, topo.mta)
	fmt.Fprintln(p.Summary, "rounds every 30 s (the offline ISP's agent keeps its results spooled); Ctrl-C stops everything")
	for _, s := range topo.sites {
		if s.scenario.Name == oneOffISP {
			oneOff(ctx, p.Summary, b, s, "http://"+collectorHTTP, webURL)
		}
	}
	cli := filepath.Join(b.binDir, CLIBin)
	if _, err := os.Stat(cli); err != nil {
		cli = ""
	}
	var end <-chan time.Time
	if p.Hold > 0 {
		end = time.After(p.Hold)
	}
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			return nil
		case <-tick.C:
		}
		out, err := inMTA("summary", "--data-dir", dataDir, "--since", "1h", "--log-level", "error")
		if err != nil {
			log.Warn("summary failed", "err", err)
			continue
		}
		fmt.Fprintf(p.Summary, "\n--- %s results of the last hour, per ASN, family and port\n%s\n", time.Now().UTC().Format("15:04:05"), out)
		if cli == "" {
			continue
		}
		table, err := exec.CommandContext(ctx, cli, "asns", "--collector", webURL).CombinedOutput()
		if err != nil {
			log.Warn("op25b asns failed", "err", err, "out", string(table))
			continue
		}
		fmt.Fprintf(p.Summary, "$ op25b asns --collector %s   (policy classes, refreshed every 10 s)\n%s", webURL, table)
	}
}

// oneOff runs one `op25b-agent check --submit` from site s, as a volunteer
// there would, against the collector's web address base (webURL on the
// host), and prints what the volunteer sees.
func oneOff(ctx context.Context, w io.Writer, b *bed, s site, base, webURL string) {
	fmt.Fprintf(w, "\none-off contribution from ISP-%s, without enrolling:\n$ op25b-agent check --submit %s\n", strings.ToUpper(s.scenario.Name), base)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, "ip", "netns", "exec", s.hosts[0], filepath.Join(b.binDir, AgentBin),
		"check", "--submit", base, "--lang", "en", "--timeout", "3s").CombinedOutput()
	w.Write(out)
	if err != nil {
		fmt.Fprintf(w, "check --submit failed: %v\n", err)
		return
	}
	fmt.Fprintf(w, "(on this host the page is under %s/result/)\n", webURL)
}
