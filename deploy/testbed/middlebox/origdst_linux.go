package middlebox

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h); both are 80, at
// level SOL_IP and SOL_IPV6 respectively.
const soOriginalDst = 80

// OriginalDst returns the destination a redirected (nft redirect or dnat)
// connection had before NAT, from the conntrack entry behind c.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: not a TCP connection: %T", c)
	}
	level := syscall.SOL_IPV6
	if tc.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().Is4() {
		level = syscall.SOL_IP
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	// Large enough for a sockaddr_in6; a sockaddr_in fills its start.
	var sa [syscall.SizeofSockaddrInet6]byte
	size := uint32(len(sa))
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if errno != 0 {
		return netip.AddrPort{}, fmt.Errorf("original destination: getsockopt SO_ORIGINAL_DST: %w", errno)
	}
	// sockaddr_in(6): family in host order, port in network order, then
	// the address (after the 4-byte flow label for IPv6).
	port := binary.BigEndian.Uint16(sa[2:4])
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case syscall.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port), nil
	case syscall.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("original destination: unexpected address family %d", binary.NativeEndian.Uint16(sa[0:2]))
}
