package asn

import (
	"net/netip"
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
