package asn

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

const pfx2asFields = 3 // prefix, length, origins

// parsePfx2as adds the prefixes of a CAIDA RouteViews prefix-to-AS file.
func parsePfx2as(b *builder, path, data string) error {
	// A network announces many prefixes: intern each single origin once,
	// keyed by number. (Keying by the column text costs a cache miss per
	// line, comparing with keys spread over the whole file.)
	single := make(map[uint32]uint32)
	var origins []uint32
	n := 0
	for line := range strings.Lines(data) {
		n++
		if skipLine(line) {
			continue
		}
		var f [pfx2asFields]string
		nf := 0
		for field := range strings.FieldsSeq(line) {
			if nf < len(f) {
				f[nf] = field
			}
			nf++
		}
		if nf != pfx2asFields {
			return fmt.Errorf("asn: pfx2as %s:%d: want %d fields (prefix, length, origins), got %d", path, n, pfx2asFields, nf)
		}
		p, err := parsePrefix(f[0], f[1])
		if err != nil {
			return fmt.Errorf("asn: pfx2as %s:%d: %w", path, n, err)
		}
		if origins, err = parseOrigins(origins[:0], f[2]); err != nil {
			return fmt.Errorf("asn: pfx2as %s:%d: %w", path, n, err)
		}
		switch len(origins) {
		case 0: // only AS 0: not routed
		case 1:
			rec, ok := single[origins[0]]
			if !ok {
				rec = b.intern(record{origins: origins})
				single[origins[0]] = rec
			}
			b.insert(p, rec)
		default:
			b.insert(p, b.intern(record{origins: origins}))
		}
	}
	return nil
}

// parsePrefix parses the address and length columns. Host bits must be zero:
// RouteViews prefixes come from BGP, where they always are, so anything else
// is corruption rather than something to mask away.
func parsePrefix(addr, length string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits, err := strconv.Atoi(length)
	if err != nil || bits < 0 || bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("bad prefix length %q for %s", length, a)
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set", p)
	}
	return p, nil
}

// parseOrigins appends to dst the origins of "13335", of the MOAS
// "38803_56203", of the AS set "4538,23910", or of a mix of both. Order is
// kept and duplicates removed, so the first origin stays the primary one.
// AS 0 is dropped.
func parseOrigins(dst []uint32, column string) ([]uint32, error) {
	s := column
	for {
		as, rest, more := strings.Cut(s, "_")
		if i := strings.IndexByte(as, ','); i >= 0 {
			as, rest, more = s[:i], s[i+1:], true
		}
		n, err := strconv.ParseUint(as, 10, 32)
		if err != nil {
			return dst, fmt.Errorf("bad origin AS %q in %q", as, column)
		}
		if n != 0 && !slices.Contains(dst, uint32(n)) {
			dst = append(dst, uint32(n))
		}
		if !more {
			return dst, nil
		}
		s = rest
	}
}
