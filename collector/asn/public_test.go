package asn

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestPublicPrefix(t *testing.T) {
	for _, c := range []struct {
		addr netip.Addr
		want netip.Prefix
	}{
		{netip.MustParseAddr("192.0.2.77"), netip.MustParsePrefix("192.0.2.0/24")},
		{netip.MustParseAddr("::ffff:192.0.2.77"), netip.MustParsePrefix("192.0.2.0/24")},
		{netip.MustParseAddr("2001:db8:1:2:3::1"), netip.MustParsePrefix("2001:db8:1::/48")},
		{netip.MustParseAddr("fe80::1%eth0"), netip.MustParsePrefix("fe80::/48")},
		{netip.Addr{}, netip.Prefix{}},
	} {
		if got := PublicPrefix(c.addr); got != c.want {
			t.Errorf("PublicPrefix(%v) = %v; want %v", c.addr, got, c.want)
		}
	}
}

func TestHolders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ip2asn.tsv")
	tsv := "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n2001:db8::\t2001:db8::ffff\t64500\tJP\tEXAMPLE-JP\n"
	if err := os.WriteFile(path, []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := Load(path, IP2ASN)
	if err != nil {
		t.Fatal(err)
	}
	got := tab.Holders()
	want := map[uint32]Holder{13335: {"CLOUDFLARENET", "US"}, 64500: {"EXAMPLE-JP", "JP"}}
	if len(got) != len(want) || got[13335] != want[13335] || got[64500] != want[64500] {
		t.Errorf("Holders = %v; want %v", got, want)
	}
}
