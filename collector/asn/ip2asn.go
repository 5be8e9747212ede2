package asn

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

const ip2asnColumns = 5 // first, last, AS, country, description

// parseIP2ASN adds the ranges of an iptoasn.com ip2asn TSV file. Columns are
// split on tabs only: descriptions contain spaces.
func parseIP2ASN(b *builder, path, data string) error {
	n := 0
	for line := range strings.Lines(data) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if skipLine(line) {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != ip2asnColumns {
			return fmt.Errorf("asn: ip2asn %s:%d: want %d tab-separated columns (first, last, AS, country, description), got %d",
				path, n, ip2asnColumns, len(cols))
		}
		first, err := netip.ParseAddr(cols[0])
		if err != nil {
			return fmt.Errorf("asn: ip2asn %s:%d: %w", path, n, err)
		}
		last, err := netip.ParseAddr(cols[1])
		if err != nil {
			return fmt.Errorf("asn: ip2asn %s:%d: %w", path, n, err)
		}
		if first.Is4() != last.Is4() || last.Less(first) {
			return fmt.Errorf("asn: ip2asn %s:%d: bad range %s-%s", path, n, first, last)
		}
		as, err := strconv.ParseUint(cols[2], 10, 32)
		if err != nil {
			return fmt.Errorf("asn: ip2asn %s:%d: bad AS %q", path, n, cols[2])
		}
		if as == 0 {
			continue // "Not routed"
		}
		country := cols[3]
		if country == "None" { // iptoasn.com's spelling of unknown
			country = ""
		}
		i := b.intern(record{origins: []uint32{uint32(as)}, name: cols[4], country: country})
		for _, p := range rangePrefixes(first, last) {
			b.insert(p, i)
		}
	}
	return nil
}

// rangePrefixes returns the fewest prefixes that cover first..last exactly,
// in address order. first and last must be of one family, first <= last.
//
// Each step takes the largest block that starts at the current address
// (limited by its trailing zero bits, its alignment) and does not pass last
// (limited by how many addresses remain).
func rangePrefixes(first, last netip.Addr) []netip.Prefix {
	width := first.BitLen()
	a, z := u128From(first), u128From(last)
	var out []netip.Prefix
	for {
		host := min(a.trailingZeros(width), z.sub(a).blockBits())
		out = append(out, netip.PrefixFrom(a.addr(width), width-host))
		end := a.or(maskLow(host)) // last address of the block
		if end == z {
			return out
		}
		a = end.addOne()
	}
}

// u128 is an address as a 128-bit unsigned integer; IPv4 addresses use the
// low 32 bits.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(width int) netip.Addr {
	if width == 32 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

// trailingZeros counts trailing zero bits, at most width.
func (u u128) trailingZeros(width int) int {
	n := bits.TrailingZeros64(u.lo)
	if n == 64 {
		n += bits.TrailingZeros64(u.hi)
	}
	return min(n, width)
}

// blockBits returns the host bits of the largest power-of-two block that
// fits in u+1 addresses: floor(log2(u+1)).
func (u u128) blockBits() int {
	n := u.addOne()
	if n == (u128{}) { // u+1 = 2^128
		return 128
	}
	if n.hi != 0 {
		return 64 + bits.Len64(n.hi) - 1
	}
	return bits.Len64(n.lo) - 1
}

func (u u128) sub(v u128) u128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return u128{hi, lo}
}

func (u u128) addOne() u128 {
	lo, carry := bits.Add64(u.lo, 1, 0)
	return u128{u.hi + carry, lo}
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

// maskLow returns a value with the low n bits set.
func maskLow(n int) u128 {
	switch {
	case n >= 128:
		return u128{^uint64(0), ^uint64(0)}
	case n >= 64:
		return u128{hi: 1<<(n-64) - 1, lo: ^uint64(0)}
	}
	return u128{lo: 1<<n - 1}
}
