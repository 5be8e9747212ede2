package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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

// collectorHTTP is the collector's web page and dataset API, on the loopback
// of its namespace.
const collectorHTTP = "127.0.0.1:9090"

// Pipeline configures the pipeline mode: after the checks, the network
// runs for real until ctx is done (or Hold passes): a collector with its
// embedded PostgreSQL beside the reference MTA, which uploads its
// sightings, and an `op25b-agent run` daemon behind every ISP, each ISP its
// own ASN; the per-ASN summary and adoption table are written to Summary
// every Every. The collector's web page and dataset API are forwarded to
// Web on the host (default 127.0.0.1:9090).
type Pipeline struct {
	Hold    time.Duration // 0: until ctx is done
	Every   time.Duration
	Summary io.Writer
	Web     string
}

// asnTable writes the ip2asn table of the testbed: each ISP's customer
// networks are one documentation ASN named after its scenario.
func asnTable(path string, sites []site) (map[string]uint32, error) {
	var b strings.Builder
	asns := map[string]uint32{}
	for _, s := range sites {
		asn := uint32(64510 + s.index)
		asns[s.scenario.Name] = asn
		v4, v6 := s.addrs(true, 0)
		for _, cidr := range []string{v4, v6} {
			p := netip.MustParsePrefix(cidr).Masked()
			fmt.Fprintf(&b, "%s\t%s\t%d\tZZ\tISP-%s\n", p.Addr(), lastAddr(p), asn, strings.ToUpper(s.scenario.Name))
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

// runPipeline runs the pipeline mode; children it starts are appended to
// *children, which the caller stops (the collector last).
func runPipeline(ctx context.Context, cfg Config, binDir, stateDir, identity string, topo *topology,
	refmta **child, children *[]*child, log *slog.Logger) error {
	p := cfg.Pipeline
	if _, err := os.Stat(filepath.Join(binDir, CollectorBin)); err != nil {
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
	go forward(ctx, web, topo.mta, collectorHTTP, log)
	webURL := "http://" + web.Addr().String()
	asnFile := filepath.Join(stateDir, "testbed.ip2asn")
	asns, err := asnTable(asnFile, topo.sites)
	if err != nil {
		return err
	}
	dataDir := filepath.Join(stateDir, "collector")
	col := filepath.Join(binDir, CollectorBin)
	addr := MTAv4.String() + ":" + collectorPort
	collector, err := startChild(CollectorBin, log, "ip", "netns", "exec", topo.mta, col,
		"--data-dir", dataDir, "--listen", addr, "--http-listen", collectorHTTP, "--tls-hosts", MTAv4.String(),
		"--refmta", identity, "--asn", asnFile, "--interval", "30s", "--jitter", "10s", "--probe-timeout", "3s", "--log-level", "warn",
		// One agent per ISP: let one prefix decide a class, and publish fast.
		"--class-min-prefixes", "1", "--refresh-every", "10s")
	if err != nil {
		return err
	}
	collector.grace = 45 * time.Second // stops after the others (stopChildren)
	*children = append(*children, collector)
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
	rtok, err := inMTA("token", "create", "--data-dir", dataDir, "--kind", "refmta", "--label", "testbed reference MTA", "--log-level", "error")
	if err != nil {
		return fmt.Errorf("testbed: refmta token: %w", err)
	}
	// Restart the reference MTA (same key) so that it uploads sightings.
	(*refmta).stop()
	r, err := startChild(RefMTABin, log, "ip", "netns", "exec", topo.mta, filepath.Join(binDir, RefMTABin),
		"--listen", MTAv4.String(), "--listen", MTAv6.String(), "--state-dir", stateDir,
		"--collector", addr, "--collector-ca", ca, "--enroll", rtok, "--log-level", "warn")
	if err != nil {
		return err
	}
	*refmta = r
	*children = append(*children, r)
	atok, err := inMTA("token", "create", "--data-dir", dataDir, "--kind", "agent", "--uses", fmt.Sprint(len(topo.sites)),
		"--label", "testbed agents", "--log-level", "error")
	if err != nil {
		return fmt.Errorf("testbed: agent token: %w", err)
	}
	var agents []*child
	for _, s := range topo.sites {
		a, err := startChild("agent "+s.scenario.Name, log, "ip", "netns", "exec", s.agent, filepath.Join(binDir, AgentBin), "run",
			"--collector", addr, "--collector-ca", ca, "--enroll", atok, "--state-dir", filepath.Join(stateDir, "agent-"+s.scenario.Name),
			"--label", s.scenario.Name, "--log-level", "warn")
		if err != nil {
			return err
		}
		*children = append(*children, a)
		agents = append(agents, a)
	}
	// An agent that exits says why: show it rather than a silent summary.
	defer func() {
		for _, a := range agents {
			if a.exited() {
				fmt.Fprintf(p.Summary, "%s exited (%v):\n%s\n", a.name, a.err, a.out.String())
			}
		}
	}()
	fmt.Fprintf(p.Summary, "\npipeline: collector %s (in namespace %s, CA %s), embedded PostgreSQL under %s; %d agents enrolled, one per ISP:\n",
		addr, topo.mta, ca, filepath.Join(dataDir, "postgres"), len(topo.sites))
	for _, s := range topo.sites {
		fmt.Fprintf(p.Summary, "  AS%d ISP-%s\n", asns[s.scenario.Name], strings.ToUpper(s.scenario.Name))
	}
	fmt.Fprintf(p.Summary, "web page and dataset API: %s/ and %s/api/v1/asns (forwarded into namespace %s)\n", webURL, webURL, topo.mta)
	fmt.Fprintln(p.Summary, "rounds every 30 s (the offline ISP's agent keeps its results spooled); Ctrl-C stops everything")
	cli := filepath.Join(binDir, CLIBin)
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
