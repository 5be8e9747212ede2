package asn

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Benchmark tables are the size of a full routing table: about a million
// IPv4 and two hundred thousand IPv6 prefixes, with lengths distributed
// roughly as in RouteViews (mostly /24 and /48), origins drawn from 75,000
// ASes. Addresses looked up fall inside announced prefixes, as observed
// source addresses do.
const (
	benchPrefixes4 = 1_000_000
	benchPrefixes6 = 200_000
	benchASes      = 75_000
	benchAddrs     = 1 << 16 // lookups cycle through these
)

var benchLengths4 = []struct{ bits, percent int }{
	{24, 60}, {23, 9}, {22, 11}, {21, 5}, {20, 5}, {19, 3}, {18, 2}, {17, 1}, {16, 3}, {12, 1},
}

var benchLengths6 = []struct{ bits, percent int }{
	{48, 55}, {44, 8}, {40, 7}, {36, 5}, {32, 20}, {29, 5},
}

type benchFixture struct {
	table          *Table
	pfx2as         []byte // the table's IPv4 part as a pfx2as file
	addrs4, addrs6 []netip.Addr
	exact          map[netip.Addr]uint32 // the map baseline
}

// fixture builds the benchmark table once for all benchmarks of the run,
// so that BenchmarkLookup and BenchmarkMapLookup measure the same addresses.
var fixture = sync.OnceValue(func() *benchFixture {
	rng := rand.New(rand.NewPCG(25, 587))
	b := newBuilder()
	f := &benchFixture{exact: make(map[netip.Addr]uint32, benchPrefixes4+benchPrefixes6+2*benchAddrs)}
	var file []byte
	var prefixes4, prefixes6 []netip.Prefix
	pick := func(lengths []struct{ bits, percent int }) int {
		n := rng.IntN(100)
		for _, l := range lengths {
			if n -= l.percent; n < 0 {
				return l.bits
			}
		}
		return lengths[0].bits
	}
	for b.t.routes.Size4() < benchPrefixes4 {
		var a [4]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		p := netip.PrefixFrom(netip.AddrFrom4(a), pick(benchLengths4)).Masked()
		as := 1 + rng.Uint32N(benchASes)
		b.insert(p, b.intern(record{origins: []uint32{as}}))
		prefixes4 = append(prefixes4, p)
		f.exact[p.Addr()] = as
		file = fmt.Appendf(file, "%s\t%d\t%d\n", p.Addr(), p.Bits(), as)
	}
	for b.t.routes.Size6() < benchPrefixes6 {
		var a [16]byte
		a[0] = 0x20 | byte(rng.IntN(16)) // 2000::/4
		for i := 1; i < 6; i++ {
			a[i] = byte(rng.Uint32())
		}
		p := netip.PrefixFrom(netip.AddrFrom16(a), pick(benchLengths6)).Masked()
		as := 1 + rng.Uint32N(benchASes)
		b.insert(p, b.intern(record{origins: []uint32{as}}))
		prefixes6 = append(prefixes6, p)
		f.exact[p.Addr()] = as
	}
	f.table = b.t
	f.pfx2as = file

	// A random host of a random prefix; the map holds it too, so the
	// baseline always hits as the table does.
	host := func(p netip.Prefix) netip.Addr {
		a := p.Addr().As16()
		for i := p.Bits() + 128 - p.Addr().BitLen(); i < 128; i++ {
			a[i/8] |= byte(rng.IntN(2)) << (7 - i%8)
		}
		addr := netip.AddrFrom16(a)
		if p.Addr().Is4() {
			addr = addr.Unmap()
		}
		f.exact[addr] = 1
		return addr
	}
	for range benchAddrs {
		f.addrs4 = append(f.addrs4, host(prefixes4[rng.IntN(len(prefixes4))]))
		f.addrs6 = append(f.addrs6, host(prefixes6[rng.IntN(len(prefixes6))]))
	}
	return f
})

var benchSink uint32

func benchFamilies(f *benchFixture) []struct {
	name  string
	addrs []netip.Addr
} {
	return []struct {
		name  string
		addrs []netip.Addr
	}{{"IPv4", f.addrs4}, {"IPv6", f.addrs6}}
}

func reportLookupRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkLookup measures longest-prefix-match lookups in a full-size
// table (run with -cpu 1 for a per-core figure).
func BenchmarkLookup(b *testing.B) {
	f := fixture()
	b.Logf("table: %d IPv4, %d IPv6 prefixes, %d records", f.table.routes.Size4(), f.table.routes.Size6(), len(f.table.records))
	for _, fam := range benchFamilies(f) {
		b.Run(fam.name, func(b *testing.B) {
			var sink uint32
			b.ResetTimer()
			for i := range b.N {
				info, _ := f.table.Lookup(fam.addrs[i%benchAddrs])
				sink += info.ASN
			}
			reportLookupRate(b)
			benchSink = sink
		})
	}
}

// BenchmarkMapLookup is the limit to compare BenchmarkLookup with: an
// exact-match lookup of the same addresses in a Go map of as many entries,
// about the cheapest keyed lookup there is.
func BenchmarkMapLookup(b *testing.B) {
	f := fixture()
	for _, fam := range benchFamilies(f) {
		b.Run(fam.name, func(b *testing.B) {
			var sink uint32
			b.ResetTimer()
			for i := range b.N {
				sink += f.exact[fam.addrs[i%benchAddrs]]
			}
			reportLookupRate(b)
			benchSink = sink
		})
	}
}

// BenchmarkLoadPfx2as measures loading a million-prefix pfx2as file, the
// work of one reload (off the read path).
func BenchmarkLoadPfx2as(b *testing.B) {
	f := fixture()
	path := filepath.Join(b.TempDir(), "routeviews-rv2.pfx2as")
	if err := os.WriteFile(path, f.pfx2as, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var tab *Table
	for range b.N {
		var err error
		if tab, err = Load(path, Pfx2as); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tab.Meta().Prefixes4)*float64(b.N)/b.Elapsed().Seconds(), "prefixes/s")
}
