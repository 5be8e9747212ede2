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
// reference MTA's key and identity, middlebox ready files). The kernel
// drops the lock when the process dies, even by SIGKILL, which is how Sweep
// tells a dead run's leftovers from a live one's. /run is a tmpfs, cleared
// at boot like the namespaces.
const lockDir = "/run/op25b-testbed"

// Interface names (at most 15 bytes). Every link is created directly inside
// its namespaces (`ip -n A link add ... peer ... netns B`), so names only
// need to be unique per namespace and the host's namespace never sees them.
const (
	custIf   = "cust"   // router, towards its customer (the agent)
	uplinkIf = "uplink" // router, towards transit
	hostIf   = "eth0"   // the agent's and the MTA's only link
	mtaIf    = "mta"    // transit, towards the MTA
)

// The reference MTA's addresses, in documentation ranges that exist only
// inside the testbed's namespaces.
var (
	MTAv4 = netip.MustParseAddr("192.0.2.25")
	MTAv6 = netip.MustParseAddr("2001:db8:25::25")
)

// maxSites bounds the scenarios of one run by the address plan: customer
// /28s from 198.51.100.0/24, index 0 unused.
const maxSites = 15

// site is one scenario's part of the topology: an ISP router namespace and
// an agent namespace behind it. Index i selects its addresses:
//
//	transit  <-> router  203.0.113.4i+1/30 <-> .4i+2/30   2001:db8:ff:i::1/64 <-> ::2/64
//	router   <-> agent   198.51.100.16i+1/28 <-> .16i+2/28 2001:db8:100:i::1/64 <-> ::2/64
type site struct {
	scenario Scenario
	index    int
	isp      string // namespace of the router
	agent    string // namespace of the agent
}

func (s site) transitIf() string { return "isp" + strconv.Itoa(s.index) }

// addrs returns, with prefix length, the addresses of one end of the
// site's uplink or customer link: host 1 is the end towards the core
// (transit on the uplink, the router on the customer link), host 2 the
// other one.
func (s site) addrs(customer bool, host int) (v4, v6 string) {
	i := s.index
	if customer {
		return fmt.Sprintf("198.51.100.%d/28", 16*i+host), fmt.Sprintf("2001:db8:100:%x::%d/64", i, host)
	}
	return fmt.Sprintf("203.0.113.%d/30", 4*i+host), fmt.Sprintf("2001:db8:ff:%x::%d/64", i, host)
}

// topology is the namespaces of one run.
type topology struct {
	transit string
	mta     string
	sites   []site
	log     *slog.Logger
}

func newTopology(id string, scenarios []Scenario, log *slog.Logger) (*topology, error) {
	if len(scenarios) > maxSites {
		return nil, fmt.Errorf("testbed: %d scenarios, the address plan holds %d", len(scenarios), maxSites)
	}
	t := &topology{
		transit: nsName(id, "transit"),
		mta:     nsName(id, "mta"),
		log:     log,
	}
	for i, sc := range scenarios {
		t.sites = append(t.sites, site{
			scenario: sc,
			index:    i + 1,
			isp:      nsName(id, "isp-"+sc.Name),
			agent:    nsName(id, "agent-"+sc.Name),
		})
	}
	return t, nil
}

func nsName(id, role string) string { return Prefix + id + "-" + role }

// namespaces lists every namespace of the topology.
func (t *topology) namespaces() []string {
	ns := []string{t.transit, t.mta}
	for _, s := range t.sites {
		ns = append(ns, s.isp, s.agent)
	}
	return ns
}

// build creates the namespaces, links, addresses, routes, sysctls and
// router rulesets. Sites are built concurrently; on error the caller still
// runs teardown, which removes whatever exists.
func (t *topology) build(ctx context.Context) error {
	if err := addNamespace(ctx, t.transit, true); err != nil {
		return err
	}
	if err := addNamespace(ctx, t.mta, false); err != nil {
		return err
	}
	if err := t.buildCore(ctx); err != nil {
		return err
	}
	errs := make([]error, len(t.sites))
	var wg sync.WaitGroup
	for i, s := range t.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.buildSite(ctx, s); err != nil {
				errs[i] = fmt.Errorf("site %s: %w", s.scenario.Name, err)
			}
		}()
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

// buildCore links the MTA to transit.
func (t *topology) buildCore(ctx context.Context) error {
	return runSteps(ctx, []step{
		{args: []string{"-n", t.transit, "link", "add", mtaIf, "type", "veth", "peer", "name", hostIf, "netns", t.mta}},
		{args: ipBatch(t.transit), stdin: lines(
			"link set lo up",
			"link set "+mtaIf+" up",
			"addr add 192.0.2.1/24 dev "+mtaIf,
			"addr add 2001:db8:25::1/64 dev "+mtaIf+" nodad",
		)},
		{args: ipBatch(t.mta), stdin: lines(
			"link set lo up",
			"link set "+hostIf+" up",
			"addr add "+MTAv4.String()+"/24 dev "+hostIf,
			"addr add "+MTAv6.String()+"/64 dev "+hostIf+" nodad",
			"route add default via 192.0.2.1",
			"route add default via 2001:db8:25::1",
		)},
	})
}

func (t *topology) buildSite(ctx context.Context, s site) error {
	tr4, tr6 := s.addrs(false, 1)
	up4, up6 := s.addrs(false, 2)
	gw4, gw6 := s.addrs(true, 1)
	ag4, ag6 := s.addrs(true, 2)
	net4, net6 := prefixOf(gw4), prefixOf(gw6)
	if err := addNamespace(ctx, s.isp, true); err != nil {
		return err
	}
	if err := addNamespace(ctx, s.agent, false); err != nil {
		return err
	}
	err := runSteps(ctx, []step{
		{args: []string{"-n", t.transit, "link", "add", s.transitIf(), "type", "veth", "peer", "name", uplinkIf, "netns", s.isp}},
		{args: []string{"-n", s.isp, "link", "add", custIf, "type", "veth", "peer", "name", hostIf, "netns", s.agent}},
		{args: ipBatch(t.transit), stdin: lines(
			"link set "+s.transitIf()+" up",
			"addr add "+tr4+" dev "+s.transitIf(),
			"addr add "+tr6+" dev "+s.transitIf()+" nodad",
			"route add "+net4+" via "+hostOf(up4),
			"route add "+net6+" via "+hostOf(up6),
		)},
		{args: ipBatch(s.isp), stdin: lines(
			"link set lo up",
			"link set "+uplinkIf+" up",
			"link set "+custIf+" up",
			"addr add "+up4+" dev "+uplinkIf,
			"addr add "+up6+" dev "+uplinkIf+" nodad",
			"addr add "+gw4+" dev "+custIf,
			"addr add "+gw6+" dev "+custIf+" nodad",
			"route add default via "+hostOf(tr4),
			"route add default via "+hostOf(tr6),
		)},
		{args: ipBatch(s.agent), stdin: lines(
			"link set lo up",
			"link set "+hostIf+" up",
			"addr add "+ag4+" dev "+hostIf,
			"addr add "+ag6+" dev "+hostIf+" nodad",
			"route add default via "+hostOf(gw4),
			"route add default via "+hostOf(gw6),
		)},
	})
	if err != nil {
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
