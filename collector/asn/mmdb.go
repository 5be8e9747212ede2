package asn

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdbMarker starts the metadata section of a MaxMind DB file, which the
// format places within the last 128 KiB.
var mmdbMarker = []byte("\xab\xcd\xefMaxMind.com")

const mmdbMetadataMax = 128 << 10

func isMMDB(data []byte) bool {
	tail := data[max(0, len(data)-mmdbMetadataMax):]
	return bytes.Contains(tail, mmdbMarker)
}

// mmdbRecord holds the fields read from an mmdb data record. GeoLite2-ASN
// names them autonomous_system_*; ipinfo uses asn ("AS13335") and as_name,
// and carries a country as country (a string) where MaxMind's country
// databases have a map with iso_code.
type mmdbRecord struct {
	Number      any    `maxminddb:"autonomous_system_number"`
	ASN         any    `maxminddb:"asn"`
	Org         string `maxminddb:"autonomous_system_organization"`
	ASName      string `maxminddb:"as_name"`
	CountryCode string `maxminddb:"country_code"`
	Country     any    `maxminddb:"country"`
}

// parseMMDB adds the networks of a MaxMind DB file. The whole file is
// verified first: the reader alone would only notice corruption on the
// networks it happens to visit.
func parseMMDB(b *builder, path string, data []byte) error {
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return fmt.Errorf("asn: mmdb %s: %w", path, err)
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		return fmt.Errorf("asn: mmdb %s: %w", path, err)
	}
	// Many networks share a data record; decode each record once.
	const unrouted = -1
	byOffset := make(map[uintptr]int64)
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return fmt.Errorf("asn: mmdb %s: %w", path, err)
		}
		i, ok := byOffset[res.Offset()]
		if !ok {
			var rec mmdbRecord
			if err := res.Decode(&rec); err != nil {
				return fmt.Errorf("asn: mmdb %s: record for %s: %w", path, res.Prefix(), err)
			}
			rc, err := rec.record()
			if err != nil {
				return fmt.Errorf("asn: mmdb %s: record for %s: %w", path, res.Prefix(), err)
			}
			i = unrouted
			if len(rc.origins) > 0 {
				i = int64(b.intern(rc))
			}
			byOffset[res.Offset()] = i
		}
		if i != unrouted {
			b.insert(res.Prefix(), uint32(i))
		}
	}
	return nil
}

// record converts the decoded fields. A record without an AS number, or with
// AS 0, is not routed.
func (m mmdbRecord) record() (record, error) {
	v := m.Number
	if v == nil {
		v = m.ASN
	}
	as, err := mmdbASN(v)
	if err != nil {
		return record{}, err
	}
	r := record{name: m.Org, country: m.CountryCode}
	if as != 0 {
		r.origins = []uint32{as}
	}
	if r.name == "" {
		r.name = m.ASName
	}
	if r.country == "" {
		switch c := m.Country.(type) {
		case string:
			r.country = c
		case map[string]any:
			r.country, _ = c["iso_code"].(string)
		}
	}
	return r, nil
}

func mmdbASN(v any) (uint32, error) {
	var n uint64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case uint64: // how the decoder returns MaxMind's unsigned types
		n = v
	case int32:
		if v < 0 {
			return 0, fmt.Errorf("bad AS number %d", v)
		}
		n = uint64(v)
	case string:
		var err error
		n, err = strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(v), "AS"), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bad AS number %q", v)
		}
	default:
		return 0, fmt.Errorf("AS number of type %T", v)
	}
	if n > 1<<32-1 {
		return 0, fmt.Errorf("AS number %d out of range", n)
	}
	return uint32(n), nil
}
