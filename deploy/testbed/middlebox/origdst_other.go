//go:build !linux

package middlebox

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst needs Linux conntrack (SO_ORIGINAL_DST); elsewhere the
// proxies only work with an UpstreamFunc that knows the destination.
func OriginalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: SO_ORIGINAL_DST needs Linux")
}
