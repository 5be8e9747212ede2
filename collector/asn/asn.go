// Package asn attributes an address to the autonomous system that announced
// it, using a prefix-to-ASN snapshot. The collector uses it on the source
// address the servers observed (never on what an agent claims about itself),
// with the snapshot in force at measurement time; see "Attribution and
// aggregation" in the design document.
//
// # Snapshots
//
// A [Table] is one immutable snapshot loaded from one of three formats:
//
//   - [Pfx2as]: CAIDA's RouteViews prefix-to-AS files (IPv4 and IPv6), lines
//     "prefix<TAB>length<TAB>origins". Origins is one AS, several origins of a
//     multi-origin prefix (MOAS) joined by "_", or an AS set joined by ",".
//     All origins are kept, the first is the primary. No names, no countries.
//   - [IP2ASN]: iptoasn.com's ip2asn TSV files (combined, v4 or v6), lines
//     "first<TAB>last<TAB>AS<TAB>country<TAB>description". Ranges need not be
//     CIDR-aligned; each is split into the fewest prefixes that cover it
//     exactly. Carries the country and the AS name.
//   - [MMDB]: MaxMind DB files with ASN records (GeoLite2-ASN, ipinfo); see
//     below.
//
// Any file may be gzip-compressed, as CAIDA and iptoasn.com publish them; the
// snapshot id ([Meta].SHA256) is still computed over the bytes on disk so an
// operator can compare it with sha256sum.
//
// AS 0 marks address space that is not routed (RFC 7607 forbids it as an
// origin; ip2asn uses it for unrouted ranges): such entries are dropped, so
// those addresses have no ASN.
//
// Parsers are strict: a line that does not parse is an error naming the file
// and line. A corrupt or truncated file must fail loudly rather than become a
// snapshot that silently attributes fewer results.
//
// # Lookups
//
// Every format ends up in the same longest-prefix-match routing table
// (github.com/gaissmai/bart, its Table variant). A lookup at a random address
// of a full table costs a few hundred nanoseconds, mostly cache misses: one
// core does about a million a second, hundreds of times the design point of
// two thousand results a second. bart's Fast variant is somewhat quicker but
// takes half as much memory again, and two tables coexist during a reload.
// Prefix metadata (origins, name, country) is interned: the million prefixes
// of a full table share on the order of a hundred thousand records.
//
// An mmdb file is read once, verified, and its networks are copied into that
// table; the reader is then dropped rather than kept for lookups. This gives
// one lookup path and one semantics for all formats (the mmdb search tree
// holds disjoint networks, so its answer and the longest match agree; a
// network nested in another when the file was written comes back with the
// outer one split around it, and [Info].Prefix is the file's network), the
// same [Info] with the matched prefix, no memory map left pointing at a file
// that an operator replaces for the next reload, and a snapshot id that
// describes exactly the bytes that were parsed. The price is a few seconds of
// load time and the table's memory, paid once per reload and never on the
// read path.
//
// # Reloading
//
// A [Source] holds the current table behind an atomic pointer: lookups never
// wait for a reload, and a file that fails to load leaves the previous table
// in use. Callers that record which snapshot attributed a result should call
// [Source.Current] once and use that table for both the lookup and its
// [Meta].
package asn

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gaissmai/bart"
)

// Format is the file format of a snapshot, named as in flags and logs.
type Format string

// Snapshot formats. Detect asks [Load] to recognise the format from the
// file's content.
const (
	Detect Format = ""
	Pfx2as Format = "pfx2as"
	IP2ASN Format = "ip2asn"
	MMDB   Format = "mmdb"
)

// ParseFormat parses a format name: pfx2as, ip2asn, mmdb, or auto (also the
// empty string) for detection.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Pfx2as, IP2ASN, MMDB, Detect:
		return f, nil
	case "auto":
		return Detect, nil
	}
	return Detect, fmt.Errorf("asn: unknown format %q (want pfx2as, ip2asn, mmdb or auto)", s)
}

func (f Format) String() string {
	if f == Detect {
		return "auto"
	}
	return string(f)
}

// Info is what a snapshot says about an address.
type Info struct {
	// ASN is the primary origin: the first one the snapshot lists.
	ASN uint32
	// Origins holds every origin, ASN first; more than one for multi-origin
	// prefixes and AS sets. It is shared with the table: do not modify it.
	Origins []uint32
	// Prefix is the most specific prefix of the snapshot that contains the
	// address: for ip2asn, one of the CIDR blocks its range was split into.
	Prefix netip.Prefix
	// Country is an ISO 3166 alpha-2 code, empty when the format has none.
	Country string
	// Name is the AS name, empty when the format has none.
	Name string
}

// Meta describes a snapshot.
type Meta struct {
	Paths  []string
	Format Format
	// SHA256 is the hex SHA-256 of the files' bytes as stored on disk,
	// concatenated in the order of Paths (`cat Paths... | sha256sum`). Two
	// loads of the same files have the same SHA256: it is the snapshot id.
	SHA256    string
	Prefixes4 int
	Prefixes6 int
	Loaded    time.Time
}

// Table is an immutable prefix-to-ASN snapshot, safe for concurrent use.
type Table struct {
	routes  bart.Table[route]
	records []record
	meta    Meta
}

// route is the value stored with each prefix: the index of its record and
// the prefix length. Knowing the length, Lookup rebuilds the matched prefix
// from the address, so it can use bart's Lookup: LookupPrefixLPM, which
// returns the prefix, is slower.
type route uint64

func makeRoute(rec uint32, bits int) route { return route(rec)<<8 | route(bits) }

func (r route) record() uint32 { return uint32(r >> 8) }
func (r route) bits() int      { return int(r & 0xff) }

type record struct {
	asn     uint32   // origins[0], kept here to save Lookup a cache miss
	origins []uint32 // never empty
	name    string
	country string
}

// Lookup returns what the snapshot says about the most specific prefix that
// contains a. IPv4-mapped IPv6 addresses are looked up as IPv4, since that is
// how a dual-stack listener reports IPv4 peers; zones are ignored. It reports
// false for addresses the snapshot does not cover.
func (t *Table) Lookup(a netip.Addr) (Info, bool) {
	a = a.Unmap()
	rt, ok := t.routes.Lookup(a)
	if !ok {
		return Info{}, false
	}
	pfx, _ := a.Prefix(rt.bits()) // cannot fail: bits came from a prefix of a's family
	r := &t.records[rt.record()]
	return Info{
		ASN:     r.asn,
		Origins: r.origins,
		Prefix:  pfx,
		Country: r.country,
		Name:    r.name,
	}, true
}

// Meta describes the snapshot.
func (t *Table) Meta() Meta {
	m := t.meta
	m.Paths = slices.Clone(m.Paths) // the table stays immutable
	return m
}

// Load loads a snapshot from one file. With [Detect] the format is
// recognised from the content.
func Load(path string, format Format) (*Table, error) {
	return LoadFiles(format, path)
}

// LoadFiles loads one snapshot from several files of one format, typically
// the IPv4 and the IPv6 pfx2as files of the same day. Where files overlap,
// the later file's entry for the same prefix wins. Every file must hold at
// least one routed prefix.
func LoadFiles(format Format, paths ...string) (*Table, error) {
	if len(paths) == 0 {
		return nil, errors.New("asn: no snapshot files")
	}
	b := newBuilder()
	sum := sha256.New()
	var loaded Format
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("asn: %w", err) // the error names the path
		}
		sum.Write(raw)
		data, err := decompress(raw)
		if err != nil {
			return nil, fmt.Errorf("asn: %s: %w", path, err)
		}
		if len(data) == 0 {
			return nil, fmt.Errorf("asn: %s: empty file", path)
		}
		f := format
		if f == Detect {
			if f, err = detect(data); err != nil {
				return nil, fmt.Errorf("asn: %s: %w", path, err)
			}
		}
		if loaded != Detect && f != loaded {
			return nil, fmt.Errorf("asn: %s is %s but %s is %s: a snapshot has one format", paths[0], loaded, path, f)
		}
		loaded = f

		if f != MMDB && !bytes.HasSuffix(data, []byte("\n")) {
			// Every line of a complete text file ends in a newline. Without
			// this check, a download cut short mid-line could still parse,
			// with a wrong last entry.
			return nil, fmt.Errorf("asn: %s %s: no newline at end of file (truncated?)", f, path)
		}
		before := b.added
		switch f {
		case Pfx2as:
			err = parsePfx2as(b, path, string(data))
		case IP2ASN:
			err = parseIP2ASN(b, path, string(data))
		case MMDB:
			err = parseMMDB(b, path, data)
		default:
			err = fmt.Errorf("asn: unknown format %q", string(f))
		}
		if err != nil {
			return nil, err
		}
		if b.added == before {
			return nil, fmt.Errorf("asn: %s %s: no routed prefixes", f, path)
		}
	}
	t := b.t
	t.meta = Meta{
		Paths:     slices.Clone(paths),
		Format:    loaded,
		SHA256:    hex.EncodeToString(sum.Sum(nil)),
		Prefixes4: t.routes.Size4(),
		Prefixes6: t.routes.Size6(),
		Loaded:    time.Now(),
	}
	return t, nil
}

var gzipMagic = []byte{0x1f, 0x8b}

func decompress(raw []byte) ([]byte, error) {
	if !bytes.HasPrefix(raw, gzipMagic) {
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	return data, nil
}

// detect recognises a format from the content: the MaxMind DB metadata
// marker, or else the shape of the first data line.
func detect(data []byte) (Format, error) {
	if isMMDB(data) {
		return MMDB, nil
	}
	if bytes.IndexByte(data[:min(len(data), 4096)], 0) >= 0 {
		return Detect, errors.New("unknown format: binary data without MaxMind DB metadata (a truncated mmdb?)")
	}
	n := 0
	for b := range bytes.Lines(data) {
		n++
		line := strings.TrimRight(string(b), "\r\n")
		if skipLine(line) {
			continue
		}
		switch {
		case strings.Count(line, "\t") == ip2asnColumns-1:
			return IP2ASN, nil
		case len(strings.Fields(line)) == pfx2asFields:
			return Pfx2as, nil
		}
		return Detect, fmt.Errorf("unknown format: line %d is neither pfx2as (%d fields) nor ip2asn (%d tab-separated columns) nor is the file an mmdb",
			n, pfx2asFields, ip2asnColumns)
	}
	return Detect, errors.New("unknown format: no data lines")
}

// skipLine reports whether a text line carries no data.
func skipLine(line string) bool {
	line = strings.TrimSpace(line)
	return line == "" || line[0] == '#'
}

// builder fills a Table, interning records so that prefixes with the same
// origins, name and country share one.
type builder struct {
	t        *Table
	interned map[string]uint32 // recordKey → index into t.records
	added    int               // prefixes inserted, including replacements
}

func newBuilder() *builder {
	return &builder{t: &Table{}, interned: make(map[string]uint32)}
}

// intern returns the index of r, adding it if new. Strings are cloned when
// stored because parsers hand out substrings of the whole file, which would
// otherwise stay in memory for the life of the table.
func (b *builder) intern(r record) uint32 {
	key := recordKey(r)
	if i, ok := b.interned[key]; ok {
		return i
	}
	i := uint32(len(b.t.records))
	b.t.records = append(b.t.records, record{
		asn:     r.origins[0],
		origins: slices.Clone(r.origins),
		name:    strings.Clone(r.name),
		country: strings.Clone(r.country),
	})
	b.interned[key] = i
	return i
}

func recordKey(r record) string {
	k := make([]byte, 0, 4*len(r.origins)+len(r.name)+len(r.country)+8)
	k = binary.BigEndian.AppendUint32(k, uint32(len(r.origins)))
	for _, o := range r.origins {
		k = binary.BigEndian.AppendUint32(k, o)
	}
	k = binary.BigEndian.AppendUint32(k, uint32(len(r.country)))
	k = append(k, r.country...)
	k = append(k, r.name...)
	return string(k)
}

func (b *builder) insert(p netip.Prefix, rec uint32) {
	b.t.routes.Insert(p, makeRoute(rec, p.Bits()))
	b.added++
}

// Holder is what a snapshot says about an AS itself.
type Holder struct {
	Name    string
	Country string
}

// Holders returns the name and country of every AS the snapshot names
// (ip2asn and mmdb carry them; pfx2as does not). When prefixes of one AS
// disagree, the first one loaded wins.
func (t *Table) Holders() map[uint32]Holder {
	out := make(map[uint32]Holder)
	for _, r := range t.records {
		if r.name == "" && r.country == "" {
			continue
		}
		if _, seen := out[r.asn]; !seen {
			out[r.asn] = Holder{Name: r.name, Country: r.country}
		}
	}
	return out
}
