package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Prefix starts the name of every network namespace the testbed creates:
// "o25-<run id>-<role>". Sweep recognises stale ones by it.
const Prefix = "o25-"

// lockDir holds one lock file per live run, "<run id>.lock", held (flock)
// for the life of the run, and the run's state directory "<run id>" (the
// reference MTAs' keys and identities, ready files, link counters). The kernel
// drops the lock when the process dies, even by SIGKILL, which is how Sweep
// tells a dead run's leftovers from a live one's. /run is a tmpfs, cleared
// at boot like the namespaces.
const lockDir = "/run/op25b-testbed"

// Interface names (at most 15 bytes). Every link is created directly inside
// its namespaces (`ip -n A link add ... peer ... netns B`), so names only
// need to be unique per namespace and the host's namespace never sees them.
const (
	custIf   = "cust"   // router: the bridge of its customer hosts
	uplinkIf = "uplink" // router, towards transit (a TUN device when impaired)
	hostIf   = "eth0"   // the only link of an agent and of a reference MTA
	mtaIf    = "mta"    // transit and the far upstream, towards their MTA
	farIf    = "far"    // transit, towards the far upstream
)

// The reference MTAs' addresses, in documentation ranges that exist only
// inside the testbed's namespaces. The main and the busy one share the MTA
// namespace and its network (AS64500); the far one has a network of its
// own (AS64501) behind its upstream router.
var (
	MTAv4     = netip.MustParseAddr("192.0.2.25")
	MTAv6     = netip.MustParseAddr("2001:db8:25::25")
	BusyMTAv4 = netip.MustParseAddr("192.0.2.26")
	BusyMTAv6 = netip.MustParseAddr("2001:db8:25::26")
	FarMTAv4  = netip.MustParseAddr("198.18.0.25")
	FarMTAv6  = netip.MustParseAddr("2001:db8:18::25")
)

// The networks of the reference MTAs, each its own ASN in the pipeline's
// ip2asn table. The far upstream's link to transit is inside the far
// network.
var (
	mainNets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:25::/48")}
	farNets  = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8:18::/48")}
)

// Addrs returns the IPv4 and IPv6 addresses of reference MTA m.
func (m RefMTA) Addrs() (v4, v6 netip.Addr) {
	switch m {
	case FarMTA:
		return FarMTAv4, FarMTAv6
	case BusyMTA:
		return BusyMTAv4, BusyMTAv6
	}
	return MTAv4, MTAv6
}

// refmtaAt returns the reference MTA with address a.
func refmtaAt(a netip.Addr) (RefMTA, bool) {
	for _, m := range RefMTAs {
		if v4, v6 := m.Addrs(); a == v4 || a == v6 {
			return m, true
		}
	}
	return "", false
}

// The hog's source addresses in the MTA namespace: one per session slot of
// the busy reference MTA, and one more to check that it refuses.
const busySessions = 4

func hogSources() []netip.Addr {
	out := make([]netip.Addr, busySessions+1)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
	}
	return out
}

// The address plan bounds the scenarios of one run and the agent hosts of
// a site: customer /29s from 198.51.100.0/24, index 0 unused; in each, the
// router is host 1 and agents are hosts 2 to 6.
const (
	maxSites = 31
	maxHosts = 5
)

// site is one scenario's part of the topology: an ISP router namespace and
// one or more agent namespaces (hosts) behind it, each with its own
// address. Index i selects the addresses:
//
//	transit <-> router  203.0.113.4i+1/30 <-> .4i+2/30      2001:db8:ff:i::1/64 <-> ::2/64
//	router  <-> host k  198.51.100.8i+1/29 <-> .8i+1+k/29   2001:db8:100:i::1/64 <-> ::(1+k)/64
type site struct {
	scenario Scenario
	index    int
	isp      string   // namespace of the router
	hosts    []string // namespaces of the agents
}

func (s site) transitIf() string { return "isp" + strconv.Itoa(s.index) }

// addrs returns, with prefix length, the addresses of one end of the
// site's uplink or customer link: host 1 is the end towards the core
// (transit on the uplink, the router on the customer link), host 2 and up
// the other ends.
func (s site) addrs(customer bool, host int) (v4, v6 string) {
	i := s.index
	if customer {
		return fmt.Sprintf("198.51.100.%d/29", 8*i+host), fmt.Sprintf("2001:db8:100:%x::%x/64", i, host)
	}
	return fmt.Sprintf("203.0.113.%d/30", 4*i+host), fmt.Sprintf("2001:db8:ff:%x::%x/64", i, host)
}

// topology is the namespaces of one run.
type topology struct {
	transit string
	mta     string
	// upFar and mtaFar are the far reference MTA's upstream router and
	// host; empty when no scenario of the run probes it.
	upFar, mtaFar string
	busy          bool // the busy reference MTA's and the hog's addresses
	sites         []site
	log           *slog.Logger
}

// newTopology lays out the sites of scenarios, each with hosts agent
// namespaces (one for a scenario whose agents share one address).
func newTopology(id string, scenarios []Scenario, hosts int, log *slog.Logger) (*topology, error) {
	if len(scenarios) > maxSites {
		return nil, fmt.Errorf("testbed: %d scenarios, the address plan holds %d", len(scenarios), maxSites)
	}
	if hosts < 1 || hosts > maxHosts {
		return nil, fmt.Errorf("testbed: %d agent hosts per scenario, the address plan holds 1 to %d", hosts, maxHosts)
	}
	t := &topology{
		transit: nsName(id, "transit"),
		mta:     nsName(id, "mta"),
		log:     log,
	}
	for i, sc := range scenarios {
		s := site{scenario: sc, index: i + 1, isp: nsName(id, "isp-"+sc.Name)}
		n := hosts
		if sc.agents() > 1 {
			n = 1
		}
		for k := range n {
			role := "agent-" + sc.Name
			if k > 0 {
				role += "-" + strconv.Itoa(k+1)
			}
			s.hosts = append(s.hosts, nsName(id, role))
		}
		t.sites = append(t.sites, s)
		for m := range sc.Expect {
			switch m {
			case FarMTA:
				t.upFar, t.mtaFar = nsName(id, "up-far"), nsName(id, "mta-far")
			case BusyMTA:
				t.busy = true
			}
		}
	}
	return t, nil
}

func nsName(id, role string) string { return Prefix + id + "-" + role }

// namespaces lists every namespace of the topology.
func (t *topology) namespaces() []string {
	ns := []string{t.transit, t.mta}
	if t.upFar != "" {
		ns = append(ns, t.upFar, t.mtaFar)
	}
	for _, s := range t.sites {
		ns = append(ns, s.isp)
		ns = append(ns, s.hosts...)
	}
	return ns
}

// mtaNamespace returns the namespace reference MTA m runs in.
func (t *topology) mtaNamespace(m RefMTA) string {
	if m == FarMTA {
		return t.mtaFar
	}
	return t.mta
}

// linkStarter makes the impaired uplink of a site: TUN devices named
// s.transitIf() in transit and uplinkIf in the router's namespace, up to
// the caller to configure.
type linkStarter func(ctx context.Context, s site) error

// build creates the namespaces, links, addresses, routes, sysctls and
// router rulesets; impaired uplinks come from startLink. Sites are built
// concurrently; on error the caller still runs teardown, which removes
// whatever exists.
func (t *topology) build(ctx context.Context, startLink linkStarter) error {
	if err := addNamespace(ctx, t.transit, true); err != nil {
		return err
	}
	if err := addNamespace(ctx, t.mta, false); err != nil {
		return err
	}
	if err := t.buildCore(ctx); err != nil {
		return err
	}
	if t.upFar != "" {
		if err := t.buildFar(ctx); err != nil {
			return fmt.Errorf("far reference MTA: %w", err)
		}
	}
	errs := make([]error, len(t.sites))
	var wg sync.WaitGroup
	for i, s := range t.sites {
		wg.Go(func() {
			if err := t.buildSite(ctx, s, startLink); err != nil {
				errs[i] = fmt.Errorf("site %s: %w", s.scenario.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// step is one `ip` invocation, with its batch on stdin if any.
type step struct {
	args  []string
	stdin string
}

func runSteps(ctx context.Context, steps []step) error {
	for _, st := range steps {
		if err := run(ctx, st.stdin, "ip", st.args...); err != nil {
			return err
		}
	}
	return nil
}

// veth creates a veth pair between namespaces a and b.
func veth(a, nameA, b, nameB string) step {
	return step{args: []string{"-n", a, "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", b}}
}

// hostConfig is the configuration of a host's only link, hostIf: its
// addresses ("addr/len") and default routes, and more lines if any.
func hostConfig(ns, v4, v6, gw4, gw6 string, more ...string) step {
	return step{args: ipBatch(ns), stdin: lines(append([]string{
		"link set lo up",
		"link set " + hostIf + " up",
		"addr add " + v4 + " dev " + hostIf,
		"addr add " + v6 + " dev " + hostIf + " nodad",
		"route add default via " + gw4,
		"route add default via " + gw6,
	}, more...)...)}
}

// buildCore links the MTA namespace to transit, with the busy reference
// MTA's and the hog's addresses when the run needs them.
func (t *topology) buildCore(ctx context.Context) error {
	var more []string
	if t.busy {
		more = append(more,
			"addr add "+BusyMTAv4.String()+"/24 dev "+hostIf,
			"addr add "+BusyMTAv6.String()+"/64 dev "+hostIf+" nodad")
		for _, a := range hogSources() {
			more = append(more, "addr add "+a.String()+"/24 dev "+hostIf)
		}
	}
	return runSteps(ctx, []step{
		veth(t.transit, mtaIf, t.mta, hostIf),
		{args: ipBatch(t.transit), stdin: lines(
			"link set lo up",
			"link set "+mtaIf+" up",
			"addr add 192.0.2.1/24 dev "+mtaIf,
			"addr add 2001:db8:25::1/64 dev "+mtaIf+" nodad",
		)},
		hostConfig(t.mta, MTAv4.String()+"/24", MTAv6.String()+"/64", "192.0.2.1", "2001:db8:25::1", more...),
	})
}

// farRuleset is the policy of the far reference MTA's upstream: inbound
// tcp/25 dropped, the control port and submission ports let through.
const farRuleset = `table inet upstream {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "` + uplinkIf + `" tcp dport 25 counter drop
	}
}
`

// buildFar builds the far reference MTA's network: an upstream router off
// transit (198.18.1.0/30, 2001:db8:18:1::/64) and the MTA's LAN behind it
// (198.18.0.0/24, 2001:db8:18::/64).
func (t *topology) buildFar(ctx context.Context) error {
	if err := addNamespace(ctx, t.upFar, true); err != nil {
		return err
	}
	if err := addNamespace(ctx, t.mtaFar, false); err != nil {
		return err
	}
	err := runSteps(ctx, []step{
		veth(t.transit, farIf, t.upFar, uplinkIf),
		veth(t.upFar, mtaIf, t.mtaFar, hostIf),
		{args: ipBatch(t.transit), stdin: lines(
			"link set "+farIf+" up",
			"addr add 198.18.1.1/30 dev "+farIf,
			"addr add 2001:db8:18:1::1/64 dev "+farIf+" nodad",
			"route add 198.18.0.0/24 via 198.18.1.2",
			"route add 2001:db8:18::/64 via 2001:db8:18:1::2",
		)},
		{args: ipBatch(t.upFar), stdin: lines(
			"link set lo up",
			"link set "+uplinkIf+" up",
			"link set "+mtaIf+" up",
			"addr add 198.18.1.2/30 dev "+uplinkIf,
			"addr add 2001:db8:18:1::2/64 dev "+uplinkIf+" nodad",
			"addr add 198.18.0.1/24 dev "+mtaIf,
			"addr add 2001:db8:18::1/64 dev "+mtaIf+" nodad",
			"route add default via 198.18.1.1",
			"route add default via 2001:db8:18:1::1",
		)},
		hostConfig(t.mtaFar, FarMTAv4.String()+"/24", FarMTAv6.String()+"/64", "198.18.0.1", "2001:db8:18::1"),
	})
	if err != nil {
		return err
	}
	return run(ctx, farRuleset, "ip", "netns", "exec", t.upFar, "nft", "-f", "-")
}

// buildSite builds a router and its hosts. The customer link is a bridge
// in the router's namespace with one veth port per host, so that the
// router's rules see every customer arrive on custIf.
func (t *topology) buildSite(ctx context.Context, s site, startLink linkStarter) error {
	tr4, tr6 := s.addrs(false, 1)
	up4, up6 := s.addrs(false, 2)
	gw4, gw6 := s.addrs(true, 1)
	net4, net6 := prefixOf(gw4), prefixOf(gw6)
	if err := addNamespace(ctx, s.isp, true); err != nil {
		return err
	}
	for _, h := range s.hosts {
		if err := addNamespace(ctx, h, false); err != nil {
			return err
		}
	}
	if s.scenario.Link != nil {
		if err := startLink(ctx, s); err != nil {
			return err
		}
	} else if err := runSteps(ctx, []step{veth(t.transit, s.transitIf(), s.isp, uplinkIf)}); err != nil {
		return err
	}
	router := []string{
		"link set lo up",
		"link set " + uplinkIf + " up",
		"link add " + custIf + " type bridge mcast_snooping 0",
		"link set " + custIf + " up",
		"addr add " + up4 + " dev " + uplinkIf,
		"addr add " + up6 + " dev " + uplinkIf + " nodad",
		"addr add " + gw4 + " dev " + custIf,
		"addr add " + gw6 + " dev " + custIf + " nodad",
		"route add default via " + hostOf(tr4),
		"route add default via " + hostOf(tr6),
	}
	steps := []step{{args: ipBatch(t.transit), stdin: lines(
		"link set "+s.transitIf()+" up",
		"addr add "+tr4+" dev "+s.transitIf(),
		"addr add "+tr6+" dev "+s.transitIf()+" nodad",
		"route add "+net4+" via "+hostOf(up4),
		"route add "+net6+" via "+hostOf(up6),
	)}}
	for k, h := range s.hosts {
		port := "h" + strconv.Itoa(k+1)
		steps = append(steps, veth(s.isp, port, h, hostIf))
		router = append(router, "link set "+port+" master "+custIf, "link set "+port+" up")
		ag4, ag6 := s.addrs(true, k+2)
		steps = append(steps, hostConfig(h, ag4, ag6, hostOf(gw4), hostOf(gw6)))
	}
	steps = append(steps, step{args: ipBatch(s.isp), stdin: lines(router...)})
	if err := runSteps(ctx, steps); err != nil {
		return err
	}
	return run(ctx, s.scenario.Ruleset(), "ip", "netns", "exec", s.isp, "nft", "-f", "-")
}

// sysctlScript tunes a fresh namespace through /proc/sys (which belongs to
// the namespace of whoever opens it), from a shell inside the namespace so
// that procps is not needed. DAD is off for every interface created later,
// link-local addresses included: with it, the first IPv6 packets of a run
// wait a second or two for addresses to leave the tentative state.
const sysctlScript = "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad"

// routerScript makes a namespace a router for both families.
const routerScript = " && echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"

// addNamespace creates a namespace and applies the sysctls, before any
// interface exists in it.
func addNamespace(ctx context.Context, ns string, router bool) error {
	if err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	script := sysctlScript
	if router {
		script += routerScript
	}
	return run(ctx, "", "ip", "netns", "exec", ns, "sh", "-c", script)
}

// teardown kills whatever still runs inside the namespaces and deletes
// them. It reports the namespaces it could not delete.
func (t *topology) teardown(ctx context.Context) error {
	return removeNamespaces(ctx, t.namespaces(), t.log)
}

// removeNamespaces deletes namespaces that exist among names. Processes
// still inside are killed first: deleting a namespace only unmounts its
// name, and a process inside would keep it (and its links) alive.
func removeNamespaces(ctx context.Context, names []string, log *slog.Logger) error {
	existing, err := listNamespaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if !existing[ns] {
			continue
		}
		killNamespace(ctx, ns, log)
		if err := run(ctx, "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func killNamespace(ctx context.Context, ns string, log *slog.Logger) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		log.Warn("listing processes in namespace", "netns", ns, "err", err)
		return
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 {
			continue
		}
		log.Info("killing leftover process", "netns", ns, "pid", pid)
		_ = killProcess(pid)
	}
}

func listNamespaces(ctx context.Context) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("testbed: ip netns list: %w", err)
	}
	names := make(map[string]bool)
	for _, l := range strings.Split(string(out), "\n") {
		// "name" or "name (id: 3)"
		if f := strings.Fields(l); len(f) > 0 {
			names[f[0]] = true
		}
	}
	return names, nil
}

// Sweep removes the namespaces, processes and lock files left by earlier
// runs that are no longer alive (crashed, SIGKILLed, interrupted twice),
// and returns the namespaces it removed. Namespaces of a run that is still
// going are left alone.
func Sweep(ctx context.Context, log *slog.Logger) ([]string, error) {
	existing, err := listNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	byRun := make(map[string][]string)
	for ns := range existing {
		rest, ok := strings.CutPrefix(ns, Prefix)
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, "-")
		byRun[id] = append(byRun[id], ns)
	}
	// Lock files and state of dead runs whose namespaces are already gone.
	if entries, err := os.ReadDir(lockDir); err == nil {
		for _, e := range entries {
			id := strings.TrimSuffix(e.Name(), ".lock")
			if _, ok := byRun[id]; !ok {
				byRun[id] = nil
			}
		}
	}
	var removed []string
	var errs []error
	for id, names := range byRun {
		lock, err := lockRun(id)
		if errors.Is(err, errRunAlive) {
			log.Info("leaving namespaces of a live run", "run", id, "namespaces", len(names))
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(names) > 0 {
			log.Info("removing stale namespaces", "run", id, "namespaces", len(names))
		}
		if err := removeNamespaces(ctx, names, log); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, names...)
		}
		os.RemoveAll(stateDir(id))
		lock.release()
	}
	return removed, errors.Join(errs...)
}

func stateDir(id string) string { return filepath.Join(lockDir, id) }

// makeStateDir creates the run's state directory, empty.
func makeStateDir(id string) (string, error) {
	dir := stateDir(id)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("testbed: state dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("testbed: state dir: %w", err)
	}
	return dir, nil
}

// runLock is a held run lock.
type runLock struct {
	path string
	f    *os.File
}

var errRunAlive = errors.New("testbed: run is alive")

// lockRun takes the lock of run id, or fails with errRunAlive when a live
// process holds it.
func lockRun(id string) (*runLock, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: lock: %w", err)
	}
	path := filepath.Join(lockDir, id+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed: lock: %w", err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errRunAlive
		}
		return nil, fmt.Errorf("testbed: lock %s: %w", path, err)
	}
	// The pid is for people reading /run; the lock is what counts.
	_ = f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return &runLock{path: path, f: f}, nil
}

// release removes the lock file, then drops the lock: in that order a
// concurrent Sweep never deletes a file another run has just locked.
func (l *runLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// run runs one command and returns its output in the error when it fails.
func run(ctx context.Context, stdin, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs `ip` commands from stdin inside ns: one process per
// namespace instead of one per address or route.
func ipBatch(ns string) []string { return []string{"-n", ns, "-batch", "-"} }

func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// hostOf strips the prefix length from "addr/len".
func hostOf(cidr string) string {
	h, _, _ := strings.Cut(cidr, "/")
	return h
}

// prefixOf returns the network of "addr/len".
func prefixOf(cidr string) string {
	return netip.MustParsePrefix(cidr).Masked().String()
}
