package asn

import (
	"strings"
	"testing"
)

// geoLite2Networks are records shaped like GeoLite2-ASN's, in an IPv6
// database with the IPv4 space under ::/96.
var geoLite2Networks = []mmdbNetwork{
	{"10.0.0.0/8", geoLite2(64500, "TEN-NET")},
	{"10.1.0.0/16", geoLite2(64501, "TEN-ONE")},
	{"192.0.2.0/24", map[string]any{
		"autonomous_system_number":       uint32(64510),
		"autonomous_system_organization": "Documentation, Inc.",
		"country_code":                   "JP",
	}},
	{"1.0.0.0/24", geoLite2(4200000000, "FOUR-BYTE")},
	{"198.51.100.0/24", map[string]any{"autonomous_system_organization": "no number"}},
	{"203.0.113.0/24", geoLite2(0, "AS ZERO")},
	{"2001:db8::/32", geoLite2(64600, "V6-NET")},
	{"2001:db8:1::/48", geoLite2(64601, "V6-NET-1")},
}

func geoLite2(as uint32, org string) map[string]any {
	return map[string]any{"autonomous_system_number": as, "autonomous_system_organization": org}
}

func TestLoadMMDB(t *testing.T) {
	path := writeFile(t, "GeoLite2-ASN.mmdb", buildMMDB(t, 6, geoLite2Networks))
	for _, f := range []Format{Detect, MMDB} {
		tab, err := Load(path, f)
		if err != nil {
			t.Fatalf("Load(%s): %v", f, err)
		}
		// The file stores disjoint networks: 10.0.0.0/8 minus 10.1.0.0/16
		// comes back as the /16, /15, /14... around it, and those are the
		// prefixes a lookup reports.
		checkLookups(t, tab, []lookupCase{
			{addr: "10.1.2.3", want: found("10.1.0.0/16", 64501).with("", "TEN-ONE"), ok: true},
			{addr: "::ffff:10.1.2.3", want: found("10.1.0.0/16", 64501).with("", "TEN-ONE"), ok: true},
			{addr: "10.0.9.9", want: found("10.0.0.0/16", 64500).with("", "TEN-NET"), ok: true},
			{addr: "10.2.0.1", want: found("10.2.0.0/15", 64500).with("", "TEN-NET"), ok: true},
			{addr: "10.200.0.1", want: found("10.128.0.0/9", 64500).with("", "TEN-NET"), ok: true},
			{addr: "192.0.2.1", want: found("192.0.2.0/24", 64510).with("JP", "Documentation, Inc."), ok: true},
			{addr: "1.0.0.1", want: found("1.0.0.0/24", 4200000000).with("", "FOUR-BYTE"), ok: true},
			{addr: "198.51.100.1"}, // no AS number
			{addr: "203.0.113.1"},  // AS 0
			{addr: "11.0.0.1"},
			{addr: "2001:db8:1::1", want: found("2001:db8:1::/48", 64601).with("", "V6-NET-1"), ok: true},
			{addr: "2001:db8:2::1", want: found("2001:db8:2::/47", 64600).with("", "V6-NET"), ok: true},
			{addr: "2001:db9::1"},
		})
		if m := tab.Meta(); m.Format != MMDB || m.Prefixes6 != 16+1 {
			// 2001:db8::/32 around a /48: 16 networks, plus the /48.
			t.Errorf("Meta() = %+v; want format mmdb and 17 IPv6 prefixes", m)
		}
	}
}

func TestLoadMMDBStyles(t *testing.T) {
	for _, c := range []struct {
		name      string
		ipVersion int
		networks  []mmdbNetwork
		cases     []lookupCase
	}{
		{
			name:      "ipinfo",
			ipVersion: 6,
			networks: []mmdbNetwork{
				{"1.1.1.0/24", map[string]any{"asn": "AS13335", "as_name": "Cloudflare, Inc.", "as_domain": "cloudflare.com", "country": "US"}},
				{"2606:4700::/32", map[string]any{"asn": "AS13335", "as_name": "Cloudflare, Inc.", "country": "US"}},
			},
			cases: []lookupCase{
				{addr: "1.1.1.1", want: found("1.1.1.0/24", 13335).with("US", "Cloudflare, Inc."), ok: true},
				{addr: "2606:4700::1111", want: found("2606:4700::/32", 13335).with("US", "Cloudflare, Inc."), ok: true},
			},
		},
		{
			name:      "IPv4 database with country map",
			ipVersion: 4,
			networks: []mmdbNetwork{
				{"192.0.2.0/25", map[string]any{"autonomous_system_number": uint32(64500), "country": map[string]any{"iso_code": "DE"}}},
				{"192.0.2.128/25", map[string]any{"autonomous_system_number": int32(64501)}},
			},
			cases: []lookupCase{
				{addr: "192.0.2.1", want: found("192.0.2.0/25", 64500).with("DE", ""), ok: true},
				{addr: "192.0.2.200", want: found("192.0.2.128/25", 64501), ok: true},
				{addr: "::ffff:192.0.2.200", want: found("192.0.2.128/25", 64501), ok: true},
				{addr: "2001:db8::1"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Load(writeFile(t, "asn.mmdb", buildMMDB(t, c.ipVersion, c.networks)), Detect)
			if err != nil {
				t.Fatal(err)
			}
			checkLookups(t, tab, c.cases)
		})
	}
}

func TestLoadMMDBErrors(t *testing.T) {
	good := buildMMDB(t, 6, geoLite2Networks)
	for _, c := range []struct {
		name   string
		data   []byte
		format Format
		want   string
	}{
		// The reader's own words are not asserted beyond the prefix: they
		// may change with its version.
		{"truncated", good[:len(good)/2], MMDB, "asn: mmdb FILE: "},
		{"truncated detected", good[:len(good)/2], Detect, "FILE: unknown format: binary data without MaxMind DB metadata"},
		{"truncated metadata", good[:len(good)-10], Detect, "asn: mmdb FILE: "},
		{"corrupt tree", corruptTree(good), Detect, "asn: mmdb FILE: "},
		{"not an ASN database", buildMMDB(t, 6, []mmdbNetwork{
			{"192.0.2.0/24", map[string]any{"country": map[string]any{"iso_code": "JP"}}},
		}), Detect, "mmdb FILE: no routed prefixes"},
		{"bad AS number", buildMMDB(t, 6, []mmdbNetwork{
			{"192.0.2.0/24", map[string]any{"asn": "ASxyz"}},
		}), Detect, `mmdb FILE: record for 192.0.2.0/24: bad AS number "ASxyz"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "GeoLite2-ASN.mmdb", c.data)
			tab, err := Load(path, c.format)
			want := strings.ReplaceAll(c.want, "FILE", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load(%s) = %v, %v; want an error containing %q", c.name, tab, err, want)
			}
		})
	}
}

// corruptTree overwrites the search tree's first node, which then points
// past the end of the tree.
func corruptTree(mmdb []byte) []byte {
	bad := append([]byte(nil), mmdb...)
	copy(bad, []byte{0xff, 0xff, 0xfe, 0xff, 0xff, 0xfe})
	return bad
}
