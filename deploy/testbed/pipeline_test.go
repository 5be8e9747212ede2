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
		for host := 2; host <= maxHosts+1; host++ { // the agents' addresses
			v4, v6 := s.addrs(true, host)
			for _, cidr := range []string{v4, v6} {
				a := netip.MustParsePrefix(cidr).Addr()
				info, ok := tab.Lookup(a)
				if !ok || info.ASN != asns[s.scenario.Name] {
					t.Errorf("%s agent %s: AS%d (found %v); want AS%d", s.scenario.Name, a, info.ASN, ok, asns[s.scenario.Name])
				}
			}
		}
	}
	for _, m := range RefMTAs {
		want := uint32(mainMTAASN)
		if m == FarMTA {
			want = farMTAASN
		}
		v4, v6 := m.Addrs()
		for _, a := range []netip.Addr{v4, v6} {
			if info, ok := tab.Lookup(a); !ok || info.ASN != want {
				t.Errorf("reference MTA %s at %s: AS%d (found %v); want AS%d", m, a, info.ASN, ok, want)
			}
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"198.51.100.16/29": "198.51.100.23", "2001:db8:100:1::/64": "2001:db8:100:1:ffff:ffff:ffff:ffff", "10.0.0.0/8": "10.255.255.255"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s; want %s", in, got, want)
		}
	}
}
