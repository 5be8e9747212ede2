package asn

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func TestRangePrefixes(t *testing.T) {
	for _, c := range []struct {
		first, last string
		want        []string
	}{
		{"1.0.0.0", "1.0.0.255", []string{"1.0.0.0/24"}},
		{"1.0.1.0", "1.0.3.255", []string{"1.0.1.0/24", "1.0.2.0/23"}},
		{"10.0.0.5", "10.0.0.20", []string{"10.0.0.5/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/30", "10.0.0.20/32"}},
		{"10.0.0.7", "10.0.0.7", []string{"10.0.0.7/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"255.255.255.254", "255.255.255.255", []string{"255.255.255.254/31"}},
		{"0.0.0.0", "127.255.255.254", []string{
			"0.0.0.0/2", "64.0.0.0/3", "96.0.0.0/4", "112.0.0.0/5", "120.0.0.0/6", "124.0.0.0/7", "126.0.0.0/8",
			"127.0.0.0/9", "127.128.0.0/10", "127.192.0.0/11", "127.224.0.0/12", "127.240.0.0/13", "127.248.0.0/14",
			"127.252.0.0/15", "127.254.0.0/16", "127.255.0.0/17", "127.255.128.0/18", "127.255.192.0/19",
			"127.255.224.0/20", "127.255.240.0/21", "127.255.248.0/22", "127.255.252.0/23", "127.255.254.0/24",
			"127.255.255.0/25", "127.255.255.128/26", "127.255.255.192/27", "127.255.255.224/28",
			"127.255.255.240/29", "127.255.255.248/30", "127.255.255.252/31", "127.255.255.254/32",
		}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", []string{"2001:db8::/32"}},
		// Across the middle of the 128-bit integer.
		{"2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::", []string{"2001:db8::ffff:ffff:ffff:ffff/128", "2001:db8:0:1::/128"}},
		{"2001:db8::8000:0:0:0", "2001:db8:0:1:7fff:ffff:ffff:ffff", []string{"2001:db8:0:0:8000::/65", "2001:db8:0:1::/65"}},
	} {
		var got []string
		for _, p := range rangePrefixes(netip.MustParseAddr(c.first), netip.MustParseAddr(c.last)) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("rangePrefixes(%s, %s) = %v; want %v", c.first, c.last, got, c.want)
		}
	}
}

// TestRangePrefixesExhaustive checks every range within a small block, for
// both families: the prefixes tile the range in order, and none could be
// widened (its parent prefix leaves the range), which makes the cover the
// smallest one.
func TestRangePrefixesExhaustive(t *testing.T) {
	for _, base := range []string{"192.0.2.0", "2001:db8::ff00"} {
		start := netip.MustParseAddr(base)
		addrs := []netip.Addr{start}
		for range 63 {
			addrs = append(addrs, addrs[len(addrs)-1].Next())
		}
		for i, first := range addrs {
			for _, last := range addrs[i:] {
				name := fmt.Sprintf("rangePrefixes(%s, %s)", first, last)
				next := first
				for _, p := range rangePrefixes(first, last) {
					if p.Addr() != next || p.Masked() != p {
						t.Fatalf("%s: %s does not start at %s or is not masked", name, p, next)
					}
					parent, _ := p.Addr().Prefix(p.Bits() - 1)
					if parent.Addr().Compare(first) >= 0 && lastAddr(parent).Compare(last) <= 0 {
						t.Fatalf("%s: %s could be %s", name, p, parent)
					}
					next = lastAddr(p).Next()
				}
				if next != last.Next() {
					t.Fatalf("%s: cover ends before %s", name, next)
				}
			}
		}
	}
}

// lastAddr is the highest address of p, computed bytewise rather than with
// the u128 arithmetic under test.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
