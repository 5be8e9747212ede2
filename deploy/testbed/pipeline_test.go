package testbed

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/op25b/observatory/collector/asn"
)

func TestASNTableCoversEveryISP(t *testing.T) {
	var sites []site
	for i, sc := range Scenarios {
		sites = append(sites, site{scenario: sc, index: i + 1})
	}
	path := filepath.Join(t.TempDir(), "testbed.ip2asn")
	asns, err := asnTable(path, sites)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := asn.Load(path, asn.IP2ASN)
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("the testbed's ip2asn table does not load: %v\n%s", err, b)
	}
	for _, s := range sites {
		v4, v6 := s.addrs(true, 2) // the agent's addresses
		for _, cidr := range []string{v4, v6} {
			a := netip.MustParsePrefix(cidr).Addr()
			info, ok := tab.Lookup(a)
			if !ok || info.ASN != asns[s.scenario.Name] {
				t.Errorf("%s agent %s: AS%d (found %v); want AS%d", s.scenario.Name, a, info.ASN, ok, asns[s.scenario.Name])
			}
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"198.51.100.16/28": "198.51.100.31", "2001:db8:100:1::/64": "2001:db8:100:1:ffff:ffff:ffff:ffff", "10.0.0.0/8": "10.255.255.255"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s; want %s", in, got, want)
		}
	}
}
