package smtpd

import (
	"net/netip"
	"testing"
)

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1/32",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
		"::ffff:192.0.2.1":     "192.0.2.1/32",
	} {
		if got := sourceKey(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("sourceKey(%s) = %s; want %s", in, got, want)
		}
	}
}
