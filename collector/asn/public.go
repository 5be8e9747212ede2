package asn

import "net/netip"

// PublicPrefix returns the /24 containing an IPv4 address or the /48
// containing an IPv6 one: what public data carries instead of a volunteer's
// address, and the unit in which aggregation counts distinct networks (a /48
// is the usual IPv6 site, so one subscriber line counts once). IPv4-mapped addresses count as IPv4 and zones are
// dropped. It returns the zero Prefix for the zero Addr.
func PublicPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // cannot fail: bits fits either family
	return p
}
