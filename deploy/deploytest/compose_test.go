package deploytest

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/asn"
)

// service returns the named service of the compose file.
func service(t *testing.T, name string) *Service {
	t.Helper()
	p, _ := compose(t)
	s := p.Services[name]
	if s == nil {
		t.Fatalf("docker-compose.yml has no service %s", name)
	}
	return s
}

// stageOf returns the Dockerfile stage a service builds, or nil.
func stageOf(t *testing.T, s *Service) *Stage {
	t.Helper()
	st, err := s.Stage()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestComposeFiles checks what the compose file takes from the repository:
// build contexts, Dockerfiles and their targets, bind-mounted files.
func TestComposeFiles(t *testing.T) {
	p, _ := compose(t)
	for _, s := range p.Services {
		if s.Build != nil {
			if st, err := os.Stat(s.Build.Context); err != nil || !st.IsDir() {
				t.Errorf("service %s: build context %s is not a directory", s.Name, rel(s.Build.Context))
			}
			if _, err := os.Stat(s.Dockerfile()); err != nil {
				t.Errorf("service %s: %v", s.Name, err)
			} else if _, err := s.Stage(); err != nil {
				t.Error(err)
			}
		}
		for _, m := range s.Volumes {
			if m.Type != "bind" {
				continue
			}
			// A missing source would be created by Docker as an empty
			// directory: the service would start with a directory where it
			// expects a file.
			st, err := os.Stat(m.Source)
			switch {
			case err != nil:
				t.Errorf("service %s: bind mount %s: %v", s.Name, m.Target, err)
			case !st.Mode().IsRegular() && filepath.Ext(m.Target) != "":
				t.Errorf("service %s: bind mount %s of %s: not a file", s.Name, m.Target, rel(m.Source))
			}
		}
	}
}

// TestComposeCommands checks every command the compose file runs with the
// programs' real flags: each service's entrypoint and command (or its
// image's), the OP25B_ variables in its environment, its health check,
// and the programs the bootstrap script runs.
func TestComposeCommands(t *testing.T) {
	p, im := compose(t)
	pr := progs(t)
	ran := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		prog, args := resolve(s.Argv(stageOf(t, s)))
		if prog != "" {
			ran[prog] = true
			c := Call{Program: prog, Args: args}
			for k := range s.Environment {
				c.Env = append(c.Env, k+"=")
			}
			if err := pr.Check(c); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		} else {
			for k := range s.Environment {
				if strings.HasPrefix(k, "OP25B_") && !grafanaEnv[k] {
					t.Errorf("service %s: %s is given to a container that runs none of our programs", name, k)
				}
			}
		}
		if s.Healthcheck != nil && len(s.Healthcheck.Test) > 1 && s.Healthcheck.Test[0] == "CMD" {
			if prog, args := resolve(s.Healthcheck.Test[1:]); prog != "" {
				if err := pr.Check(Call{Program: prog, Args: args}); err != nil {
					t.Errorf("service %s: health check: %v", name, err)
				}
			}
		}
	}
	for _, prog := range []string{"op25b-agent", "op25b-refmta", "op25b-collector", "op25b"} {
		if !ran[prog] {
			t.Errorf("no service of docker-compose.yml runs %s", prog)
		}
	}

	script, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "bootstrap.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := ShellCommands(string(script))
	if err != nil {
		t.Fatalf("bootstrap.sh: %v", err)
	}
	calls, err := im.Calls(cmds)
	if err != nil {
		t.Fatalf("bootstrap.sh: %v", err)
	}
	if len(calls) < 3 {
		t.Errorf("bootstrap.sh: found %d calls of our programs; want op25b-refmta identity, token list and token create", len(calls))
	}
	for _, c := range calls {
		if err := pr.Check(c); err != nil {
			t.Errorf("bootstrap.sh:%d: %s: %v", c.Line, c, err)
		}
	}
	for _, name := range []string{"bootstrap", "publish-ca"} {
		s := service(t, name)
		if len(s.Command) != 1 || !strings.Contains(string(script), "\n"+s.Command[0]+")\n") {
			t.Errorf("service %s: command %q is not a case of bootstrap.sh", name, s.Command)
		}
	}
}

// grafanaEnv are the variables the provisioned data sources read
// (dashboard/provisioning/datasources).
var grafanaEnv = map[string]bool{"OP25B_COLLECTOR_GRPC": true, "OP25B_PROMETHEUS_URL": true}

// TestComposeGrafana checks that Grafana gets every variable its
// provisioned data sources expand, and the collector's CA where they read it.
func TestComposeGrafana(t *testing.T) {
	g := service(t, "grafana")
	files, _ := filepath.Glob(filepath.Join(root, "dashboard", "provisioning", "datasources", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no dashboard/provisioning/datasources/*.yaml")
	}
	var prov strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		prov.Write(b)
	}
	for v := range grafanaEnv {
		if strings.Contains(prov.String(), "${"+v+"}") && g.Env(v) == "" {
			t.Errorf("grafana: the data sources read ${%s}, which the service does not set", v)
		}
	}
	if strings.Contains(prov.String(), "$__file{/etc/op25b/ca.pem}") && !mounts(g, "public", "/etc/op25b") {
		t.Errorf("grafana: the data sources read /etc/op25b/ca.pem; mount the public volume there")
	}
	if !strings.Contains(g.Env("OP25B_COLLECTOR_GRPC"), "collector:") || !strings.Contains(g.Env("OP25B_PROMETHEUS_URL"), "prometheus:") {
		t.Errorf("grafana: OP25B_COLLECTOR_GRPC=%q OP25B_PROMETHEUS_URL=%q; want the collector and prometheus services",
			g.Env("OP25B_COLLECTOR_GRPC"), g.Env("OP25B_PROMETHEUS_URL"))
	}
	if c := g.DependsOn["publish-ca"].Condition; c != "service_completed_successfully" {
		t.Errorf("grafana: depends on publish-ca with %q; Grafana refuses to start without the CA file", c)
	}
}

func mounts(s *Service, source, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(m Mount) bool { return m.Source == source && m.Target == target })
}

// TestComposeNetwork checks the address plan: static addresses inside the
// subnet and outside the dynamic range; each access network's router in
// its own /24, attributed by deploy/compose/demo.ip2asn to its own AS; the
// reference MTAs' identity documents advertising the addresses their
// services have; the collector's certificate covering the names agents
// dial; agents joining their router's namespace without privileges.
func TestComposeNetwork(t *testing.T) {
	p, _ := compose(t)
	if len(p.Networks["observatory"].IPAM.Config) != 1 {
		t.Fatalf("network observatory: want one IPAM config")
	}
	ipam := p.Networks["observatory"].IPAM.Config[0]
	subnet, err := netip.ParsePrefix(ipam.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	dynamic, err := netip.ParsePrefix(ipam.IPRange)
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]netip.Addr{}
	for _, s := range p.Services {
		if n := s.Networks["observatory"]; n != nil && n.IPv4Address != "" {
			a, err := netip.ParseAddr(n.IPv4Address)
			if err != nil || !subnet.Contains(a) || dynamic.Contains(a) {
				t.Errorf("service %s: address %s: want one in %s outside the dynamic range %s", s.Name, n.IPv4Address, subnet, dynamic)
			}
			addr[s.Name] = a
		}
	}

	table, err := asn.Load(filepath.Join(root, "deploy", "compose", "demo.ip2asn"), asn.IP2ASN)
	if err != nil {
		t.Fatal(err)
	}
	asOf := map[uint32]string{}
	routers := 0
	for _, s := range p.Services {
		router, ok := strings.CutPrefix(s.NetworkMode, "service:")
		if !ok {
			continue
		}
		routers++
		r := p.Services[router]
		if len(s.CapAdd) > 0 || s.Sysctls != nil {
			t.Errorf("service %s: behind a router it needs no capability or sysctl; has %v %v", s.Name, s.CapAdd, s.Sysctls)
		}
		if !slices.Contains(r.CapAdd, "NET_ADMIN") {
			t.Errorf("service %s: needs NET_ADMIN to load its rules", router)
		}
		if c := s.DependsOn[router].Condition; c != "service_healthy" {
			t.Errorf("service %s: depends on %s with %q; want service_healthy (its rules loaded)", s.Name, router, c)
		}
		a, ok := addr[router]
		if !ok {
			t.Errorf("service %s: no static address", router)
			continue
		}
		res, ok := table.Lookup(a)
		if !ok {
			t.Errorf("%s (%s): no AS in demo.ip2asn", router, a)
			continue
		}
		if other, dup := asOf[res.ASN]; dup {
			t.Errorf("%s and %s are both in AS%d: each access network needs its own", router, other, res.ASN)
		}
		asOf[res.ASN] = router
		if res.Country == "" {
			t.Errorf("%s (%s): AS%d has no country in demo.ip2asn: the Geomap panel cannot place it", router, a, res.ASN)
		}
		for other, b := range addr {
			if other != router && asn.PublicPrefix(b) == asn.PublicPrefix(a) {
				t.Errorf("%s and %s share the /24 %s", router, other, asn.PublicPrefix(a))
			}
		}
	}
	if routers < 2 {
		t.Errorf("%d services behind a router; want agents behind the open and the OP25B network", routers)
	}

	boot := service(t, "bootstrap")
	collector := service(t, "collector")
	inv, err := progs(t).Parse("op25b-collector", collector.Command)
	if err != nil {
		t.Fatal(err)
	}
	var refmtaFlags []string
	for i, a := range collector.Command {
		if v, ok := strings.CutPrefix(a, "--refmta="); ok {
			refmtaFlags = append(refmtaFlags, v)
		} else if a == "--refmta" && i+1 < len(collector.Command) {
			refmtaFlags = append(refmtaFlags, collector.Command[i+1])
		}
	}
	specs := strings.Fields(boot.Env("BOOTSTRAP_REFMTAS"))
	if len(specs) < 2 {
		t.Errorf("bootstrap: BOOTSTRAP_REFMTAS=%q; want two reference MTAs", boot.Env("BOOTSTRAP_REFMTAS"))
	}
	for _, spec := range specs {
		name, a, _ := strings.Cut(spec, "=")
		s := p.Services[name]
		if s == nil {
			t.Errorf("BOOTSTRAP_REFMTAS names %s, which is no service", name)
			continue
		}
		if addr[name].String() != a || s.Env("OP25B_ADVERTISE") != a || s.Env("OP25B_HOSTNAME") != name {
			t.Errorf("service %s: address %s, OP25B_ADVERTISE=%s, OP25B_HOSTNAME=%s; bootstrap made its identity for %s at %s",
				name, addr[name], s.Env("OP25B_ADVERTISE"), s.Env("OP25B_HOSTNAME"), name, a)
		}
		if !slices.Contains(refmtaFlags, "/etc/op25b/"+name+".json") {
			t.Errorf("collector: no --refmta=/etc/op25b/%s.json (it has %q)", name, refmtaFlags)
		}
		if s.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" && s.Env("OP25B_PORTS") == "" {
			t.Errorf("service %s: listens on 25, 587, 465 and 443 as user 65532; set net.ipv4.ip_unprivileged_port_start=0", name)
		}
	}
	hosts := strings.Split(inv.Flags["tls-hosts"], ",")
	if !slices.Contains(hosts, "collector") || !slices.Contains(hosts, addr["collector"].String()) {
		t.Errorf("collector: --tls-hosts=%s; want the service name and %s, which agents and Grafana dial", inv.Flags["tls-hosts"], addr["collector"])
	}
	if iv, err := time.ParseDuration(inv.Flags["interval"]); err != nil || iv > 5*time.Minute {
		t.Errorf("collector: --interval=%s: a demo should show results within minutes", inv.Flags["interval"])
	}
}
