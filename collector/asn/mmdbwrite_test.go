package asn

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
)

// A minimal MaxMind DB writer (format 2.0, https://maxmind.github.io/MaxMind-DB/)
// for tests: enough to build real files with a few networks and flat
// records, read back by the same reader production uses. It is written here
// rather than taken from github.com/maxmind/mmdbwriter, which would add a
// module and its dependencies to go.mod for a few hundred lines of format
// that the spec describes completely.

// mmdbNetwork is a network of a test database and its data record. Record
// values may be string, uint16, uint32, uint64, int32 or map[string]any.
type mmdbNetwork struct {
	prefix string
	record map[string]any
}

// mmdbTrieNode is a node of the search tree being built: internal when it
// has no data, a data leaf otherwise. A nil child is a network without data.
type mmdbTrieNode struct {
	child [2]*mmdbTrieNode
	data  int // index into the data records; -1 for internal nodes
}

// buildMMDB returns the bytes of a database with 24-bit records, like
// GeoLite2-ASN. In an IPv6 database, IPv4 networks are placed under ::/96
// as MaxMind's writer does. Nested networks are allowed: the inner one wins,
// as when a writer pushes the outer record down to the unset branches.
func buildMMDB(t testing.TB, ipVersion int, networks []mmdbNetwork) []byte {
	t.Helper()
	type entry struct {
		bits []byte // one byte per bit of the prefix, from the root
		data int
	}
	var entries []entry
	var data []byte
	var dataOffsets []int
	for i, n := range networks {
		p := netip.MustParsePrefix(n.prefix)
		if p.Bits() == 0 || p.Masked() != p {
			t.Fatalf("buildMMDB: network %s: want a non-zero, masked prefix", p)
		}
		addr := p.Addr().As16()
		skip, nbits := 0, p.Bits()
		switch {
		case p.Addr().Is4() && ipVersion == 6:
			addr = [16]byte{12: addr[12], 13: addr[13], 14: addr[14], 15: addr[15]}
			nbits += 96
		case p.Addr().Is4():
			skip = 96
		case ipVersion == 4:
			t.Fatalf("buildMMDB: IPv6 network %s in an IPv4 database", p)
		}
		e := entry{data: i}
		for b := skip; b < skip+nbits; b++ {
			e.bits = append(e.bits, addr[b/8]>>(7-b%8)&1)
		}
		entries = append(entries, e)
		dataOffsets = append(dataOffsets, len(data))
		data = mmdbEncode(t, data, n.record)
	}

	// Shorter prefixes first, so that a more specific network splits the
	// leaf of the network that contains it.
	slices.SortStableFunc(entries, func(a, b entry) int { return cmp.Compare(len(a.bits), len(b.bits)) })
	root := &mmdbTrieNode{data: -1}
	for _, e := range entries {
		n := root
		for depth, bit := range e.bits {
			if n.data >= 0 { // split a containing network's leaf
				n.child = [2]*mmdbTrieNode{{data: n.data}, {data: n.data}}
				n.data = -1
			}
			if depth == len(e.bits)-1 {
				n.child[bit] = &mmdbTrieNode{data: e.data}
				break
			}
			if n.child[bit] == nil {
				n.child[bit] = &mmdbTrieNode{data: -1}
			}
			n = n.child[bit]
		}
	}

	// Number the internal nodes breadth first, root 0.
	var internal []*mmdbTrieNode
	number := map[*mmdbTrieNode]int{}
	for queue := []*mmdbTrieNode{root}; len(queue) > 0; queue = queue[1:] {
		n := queue[0]
		number[n] = len(internal)
		internal = append(internal, n)
		for _, c := range n.child {
			if c != nil && c.data < 0 {
				queue = append(queue, c)
			}
		}
	}
	nodeCount := len(internal)
	record := func(c *mmdbTrieNode) uint32 {
		switch {
		case c == nil:
			return uint32(nodeCount) // no data
		case c.data >= 0:
			return uint32(nodeCount + 16 + dataOffsets[c.data])
		}
		return uint32(number[c])
	}
	var out []byte
	for _, n := range internal {
		for _, c := range n.child {
			r := record(c)
			if r >= 1<<24 {
				t.Fatalf("buildMMDB: record %d does not fit in 24 bits", r)
			}
			out = append(out, byte(r>>16), byte(r>>8), byte(r))
		}
	}
	out = append(out, make([]byte, 16)...) // data section separator
	out = append(out, data...)
	out = append(out, mmdbMarker...)
	return mmdbEncode(t, out, map[string]any{
		"binary_format_major_version": uint16(2),
		"binary_format_minor_version": uint16(0),
		"build_epoch":                 uint64(1_700_000_000),
		"database_type":               "Test-ASN",
		"description":                 map[string]any{"en": "observatory test database"},
		"ip_version":                  uint16(ipVersion),
		"languages":                   []string{"en"},
		"node_count":                  uint32(nodeCount),
		"record_size":                 uint16(24),
	})
}

// MaxMind DB data types.
const (
	mmdbString = 2
	mmdbUint16 = 5
	mmdbUint32 = 6
	mmdbMap    = 7
	mmdbInt32  = 8
	mmdbUint64 = 9
	mmdbArray  = 11
)

func mmdbEncode(t testing.TB, b []byte, v any) []byte {
	t.Helper()
	switch v := v.(type) {
	case string:
		b = mmdbControl(b, mmdbString, len(v))
		return append(b, v...)
	case uint16:
		return mmdbUint(b, mmdbUint16, uint64(v))
	case uint32:
		return mmdbUint(b, mmdbUint32, uint64(v))
	case uint64:
		return mmdbUint(b, mmdbUint64, v)
	case int32:
		b = mmdbControl(b, mmdbInt32, 4)
		return binary.BigEndian.AppendUint32(b, uint32(v))
	case []string:
		b = mmdbControl(b, mmdbArray, len(v))
		for _, s := range v {
			b = mmdbEncode(t, b, s)
		}
		return b
	case map[string]any:
		b = mmdbControl(b, mmdbMap, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			b = mmdbEncode(t, b, k)
			b = mmdbEncode(t, b, v[k])
		}
		return b
	}
	t.Fatalf("mmdbEncode: unsupported %T", v)
	return nil
}

// mmdbUint encodes an unsigned integer in as few big-endian bytes as needed.
func mmdbUint(b []byte, typ int, v uint64) []byte {
	var be [8]byte
	binary.BigEndian.PutUint64(be[:], v)
	n := 8
	for n > 0 && be[8-n] == 0 {
		n--
	}
	b = mmdbControl(b, typ, n)
	return append(b, be[8-n:]...)
}

// mmdbControl appends a control byte, the extended type byte for types
// above 7, and the size bytes for sizes of 29 and more.
func mmdbControl(b []byte, typ, size int) []byte {
	ctrl := byte(typ << 5)
	var ext []byte
	if typ > 7 {
		ctrl = 0
		ext = []byte{byte(typ - 7)}
	}
	var sz []byte
	switch {
	case size < 29:
		ctrl |= byte(size)
	case size < 29+256:
		ctrl |= 29
		sz = []byte{byte(size - 29)}
	case size < 285+65536:
		ctrl |= 30
		sz = binary.BigEndian.AppendUint16(nil, uint16(size-285))
	default:
		ctrl |= 31
		s := size - 65821
		sz = []byte{byte(s >> 16), byte(s >> 8), byte(s)}
	}
	b = append(b, ctrl)
	b = append(b, ext...)
	return append(b, sz...)
}

func TestBuildMMDB(t *testing.T) {
	// The writer is checked by the reader's own verifier and lookups, so that
	// the mmdb tests exercise real files rather than the writer's mistakes.
	for _, v := range []int{4, 6} {
		t.Run(fmt.Sprint("ipv", v), func(t *testing.T) {
			networks := []mmdbNetwork{
				{"192.0.2.0/24", map[string]any{"autonomous_system_number": uint32(64500)}},
				{"198.51.100.0/22", map[string]any{"autonomous_system_number": uint32(64501)}},
			}
			if v == 6 {
				networks = append(networks, mmdbNetwork{"2001:db8::/32", map[string]any{"autonomous_system_number": uint32(64502)}})
			}
			raw := buildMMDB(t, v, networks)
			b := newBuilder()
			if err := parseMMDB(b, "test.mmdb", raw); err != nil {
				t.Fatal(err)
			}
			if b.added != len(networks) {
				t.Errorf("parseMMDB added %d networks; want %d", b.added, len(networks))
			}
		})
	}
}
