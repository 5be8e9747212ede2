package asn

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeFile writes a snapshot file into a fresh temporary directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type lookupCase struct {
	addr string
	want Info
	ok   bool
}

// found builds the expected Info of a hit.
func found(prefix string, origins ...uint32) Info {
	return Info{ASN: origins[0], Origins: origins, Prefix: netip.MustParsePrefix(prefix)}
}

func (i Info) with(country, name string) Info {
	i.Country, i.Name = country, name
	return i
}

func checkLookups(t *testing.T, tab *Table, cases []lookupCase) {
	t.Helper()
	for _, c := range cases {
		got, ok := tab.Lookup(netip.MustParseAddr(c.addr))
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
}

const pfx2as4 = `# RouteViews prefix-to-AS, IPv4
10.0.0.0	8	64500
10.1.0.0	16	64501
10.1.2.0	24	64502
192.0.2.0	24	64510_64511
198.51.100.0	24	64520,64521
203.0.113.0	24	64530_64531,64532_64530
100.64.0.0	10	0

1.0.0.0	24	4200000000
`

const pfx2as6 = `2001:db8::	32	64600
2001:db8:1::	48	64601
`

var pfx2asLookups = []lookupCase{
	{addr: "10.1.2.3", want: found("10.1.2.0/24", 64502), ok: true},
	{addr: "10.1.3.1", want: found("10.1.0.0/16", 64501), ok: true},
	{addr: "10.2.0.1", want: found("10.0.0.0/8", 64500), ok: true},
	{addr: "192.0.2.7", want: found("192.0.2.0/24", 64510, 64511), ok: true},
	{addr: "198.51.100.1", want: found("198.51.100.0/24", 64520, 64521), ok: true},
	{addr: "203.0.113.9", want: found("203.0.113.0/24", 64530, 64531, 64532), ok: true},
	{addr: "1.0.0.1", want: found("1.0.0.0/24", 4200000000), ok: true},
	{addr: "100.64.0.1"}, // AS 0: not routed
	{addr: "11.0.0.1"},
	{addr: "::ffff:10.1.2.3", want: found("10.1.2.0/24", 64502), ok: true},
	{addr: "2001:db8:1::5", want: found("2001:db8:1::/48", 64601), ok: true},
	{addr: "2001:db8:1::5%eth0", want: found("2001:db8:1::/48", 64601), ok: true},
	{addr: "2001:db8:2::1", want: found("2001:db8::/32", 64600), ok: true},
	{addr: "2001:db9::1"},
}

func TestLoadPfx2as(t *testing.T) {
	t.Run("one file", func(t *testing.T) {
		path := writeFile(t, "routeviews-rv2-20261122-1200.pfx2as", []byte(pfx2as4+pfx2as6))
		for _, f := range []Format{Detect, Pfx2as} {
			tab, err := Load(path, f)
			if err != nil {
				t.Fatalf("Load(%s): %v", f, err)
			}
			checkLookups(t, tab, pfx2asLookups)
		}
	})
	t.Run("v4 and gzipped v6", func(t *testing.T) {
		v4 := []byte(pfx2as4)
		v6 := gzipped(t, []byte(pfx2as6))
		p4 := writeFile(t, "routeviews-rv2.pfx2as", v4)
		p6 := writeFile(t, "routeviews-rv6.pfx2as.gz", v6)
		tab, err := LoadFiles(Detect, p4, p6)
		if err != nil {
			t.Fatal(err)
		}
		checkLookups(t, tab, pfx2asLookups)

		sum := sha256.Sum256(append(v4, v6...))
		m := tab.Meta()
		want := Meta{
			Paths: []string{p4, p6}, Format: Pfx2as, SHA256: hex.EncodeToString(sum[:]),
			Prefixes4: 7, Prefixes6: 2, Loaded: m.Loaded,
		}
		if !reflect.DeepEqual(m, want) || m.Loaded.IsZero() {
			t.Errorf("Meta() = %+v; want %+v", m, want)
		}
	})
}

func TestLoadIP2ASN(t *testing.T) {
	const tsv = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n" +
		"1.0.1.0\t1.0.3.255\t64501\tCN\tCHINANET-FJ Fujian\n" +
		"1.0.4.0\t1.0.7.255\t0\tNone\tNot routed\n" +
		"10.0.0.5\t10.0.0.20\t64502\tJP\tODD-RANGE Example, Inc.\n" +
		"2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t64600\tDE\tV6-NET\r\n" +
		"2001:db9::\t2001:db9::ffff\t64601\tNone\t\n"
	path := writeFile(t, "ip2asn-combined.tsv", []byte(tsv))
	tab, err := Load(path, Detect)
	if err != nil {
		t.Fatal(err)
	}
	odd := func(prefix string) Info { return found(prefix, 64502).with("JP", "ODD-RANGE Example, Inc.") }
	checkLookups(t, tab, []lookupCase{
		{addr: "1.0.0.77", want: found("1.0.0.0/24", 13335).with("US", "CLOUDFLARENET"), ok: true},
		{addr: "1.0.1.1", want: found("1.0.1.0/24", 64501).with("CN", "CHINANET-FJ Fujian"), ok: true},
		{addr: "1.0.2.200", want: found("1.0.2.0/23", 64501).with("CN", "CHINANET-FJ Fujian"), ok: true},
		{addr: "1.0.5.1"},
		{addr: "10.0.0.4"},
		{addr: "10.0.0.5", want: odd("10.0.0.5/32"), ok: true},
		{addr: "10.0.0.7", want: odd("10.0.0.6/31"), ok: true},
		{addr: "10.0.0.12", want: odd("10.0.0.8/29"), ok: true},
		{addr: "10.0.0.19", want: odd("10.0.0.16/30"), ok: true},
		{addr: "10.0.0.20", want: odd("10.0.0.20/32"), ok: true},
		{addr: "10.0.0.21"},
		{addr: "2001:db8:5::1", want: found("2001:db8::/32", 64600).with("DE", "V6-NET"), ok: true},
		{addr: "2001:db9::abcd", want: found("2001:db9::/112", 64601), ok: true},
	})
	m := tab.Meta()
	if m.Format != IP2ASN || m.Prefixes4 != 8 || m.Prefixes6 != 2 {
		t.Errorf("Meta() = %+v; want format ip2asn, 8 IPv4 and 2 IPv6 prefixes", m)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, c := range []struct {
		name, data string
		format     Format
		want       string // in the error
	}{
		{"empty", "", Detect, "empty file"},
		{"empty pfx2as", "", Pfx2as, "empty file"},
		{"comments only", "# nothing\n\n", Detect, "no data lines"},
		{"comments only pfx2as", "# nothing\n", Pfx2as, "no routed prefixes"},
		{"unrouted only", "100.64.0.0\t10\t0\n", Pfx2as, "no routed prefixes"},
		{"garbage", "<html>\n", Detect, "line 1 is neither pfx2as"},
		{"pfx2as garbage line", "10.0.0.0\t8\t64500\nsome garbage here now\n", Detect, "pfx2as FILE:2: want 3 fields"},
		{"pfx2as short line", "10.0.0.0\t8\n", Pfx2as, "pfx2as FILE:1: want 3 fields"},
		{"pfx2as truncated", "10.0.0.0\t8\t64500\n10.1.0.0\t16\t645", Detect, "pfx2as FILE: no newline at end of file (truncated?)"},
		{"ip2asn truncated", "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLA", Detect, "ip2asn FILE: no newline at end of file"},
		{"pfx2as bad address", "10.0.0.300\t8\t64500\n", Pfx2as, "pfx2as FILE:1: ParseAddr"},
		{"pfx2as bad length", "10.0.0.0\t33\t64500\n", Pfx2as, `pfx2as FILE:1: bad prefix length "33"`},
		{"pfx2as host bits", "10.0.0.1\t8\t64500\n", Pfx2as, "pfx2as FILE:1: 10.0.0.1/8 has host bits set"},
		{"pfx2as bad origin", "10.0.0.0\t8\tAS64500\n", Pfx2as, `pfx2as FILE:1: bad origin AS "AS64500"`},
		{"pfx2as empty origin", "10.0.0.0\t8\t64500_\n", Pfx2as, `pfx2as FILE:1: bad origin AS ""`},
		{"ip2asn too few columns", "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\t13335\tUS\n", IP2ASN,
			"ip2asn FILE:2: want 5 tab-separated columns (first, last, AS, country, description), got 4"},
		{"ip2asn too many columns", "1.0.0.0\t1.0.0.255\t13335\tUS\tX\tY\n", IP2ASN, "ip2asn FILE:1: want 5 tab-separated columns"},
		{"ip2asn reversed range", "1.0.0.255\t1.0.0.0\t13335\tUS\tX\n", Detect, "ip2asn FILE:1: bad range"},
		{"ip2asn mixed families", "1.0.0.0\t2001:db8::\t13335\tUS\tX\n", Detect, "ip2asn FILE:1: bad range"},
		{"ip2asn bad AS", "1.0.0.0\t1.0.0.255\tAS13335\tUS\tX\n", Detect, `ip2asn FILE:1: bad AS "AS13335"`},
		{"pfx2as read as ip2asn", "10.0.0.0\t8\t64500\n", IP2ASN, "ip2asn FILE:1: want 5"},
		{"text read as mmdb", "10.0.0.0\t8\t64500\n", MMDB, "mmdb FILE: error opening database"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "snapshot", []byte(c.data))
			tab, err := Load(path, c.format)
			want := strings.ReplaceAll(c.want, "FILE", path)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "asn: ") {
				t.Fatalf("Load(%q, %s) = %v, %v; want an error containing %q", c.data, c.format, tab, err, want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.pfx2as")
		if _, err := Load(path, Detect); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(missing) = %v; want fs.ErrNotExist naming the path", err)
		}
	})
	t.Run("no files", func(t *testing.T) {
		if _, err := LoadFiles(Detect); err == nil {
			t.Error("LoadFiles() = nil error; want one")
		}
	})
	t.Run("mixed formats", func(t *testing.T) {
		p := writeFile(t, "a.pfx2as", []byte(pfx2as4))
		i := writeFile(t, "b.tsv", []byte("1.0.0.0\t1.0.0.255\t13335\tUS\tX\n"))
		if _, err := LoadFiles(Detect, p, i); err == nil || !strings.Contains(err.Error(), "one format") {
			t.Errorf("LoadFiles(pfx2as, ip2asn) = %v; want a one-format error", err)
		}
	})
	t.Run("one empty file of two", func(t *testing.T) {
		p := writeFile(t, "a.pfx2as", []byte(pfx2as4))
		e := writeFile(t, "b.pfx2as", []byte("# truncated\n"))
		if _, err := LoadFiles(Pfx2as, p, e); err == nil || !strings.Contains(err.Error(), e) {
			t.Errorf("LoadFiles(good, empty) = %v; want an error naming %s", err, e)
		}
	})
}

func TestParseFormat(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Format
		ok   bool
	}{
		{"pfx2as", Pfx2as, true},
		{"ip2asn", IP2ASN, true},
		{"mmdb", MMDB, true},
		{"auto", Detect, true},
		{"", Detect, true},
		{"csv", Detect, false},
	} {
		got, err := ParseFormat(c.in)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if s := Detect.String(); s != "auto" {
		t.Errorf("Detect.String() = %q; want auto", s)
	}
}
