package ingest

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/asn"
)

func pfx2as(t *testing.T, lines string) *asn.Table {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routeviews-rv2.pfx2as")
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := asn.Load(path, asn.Pfx2as)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestSnapshotInForceAtMeasurement(t *testing.T) {
	var s Snapshots
	a := netip.MustParseAddr("198.51.100.7")
	if got := s.Attribute(a, time.Now()); got != (Attribution{}) {
		t.Errorf("no snapshot: %+v; want none", got)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s.Add(pfx2as(t, "198.51.100.0\t24\t64500\n"), 1, t0)
	s.Add(pfx2as(t, "198.51.100.0\t24\t64501\n"), 2, t0.Add(24*time.Hour))
	for _, c := range []struct {
		at   time.Time
		want Attribution
	}{
		{t0.Add(-time.Hour), Attribution{64500, 1}}, // before all: the oldest kept
		{t0.Add(time.Hour), Attribution{64500, 1}},
		{t0.Add(25 * time.Hour), Attribution{64501, 2}},
	} {
		if got := s.Attribute(a, c.at); got != c.want {
			t.Errorf("Attribute(%s, %v) = %+v; want %+v", a, c.at, got, c.want)
		}
	}
	if got := s.Attribute(netip.MustParseAddr("192.0.2.1"), t0.Add(25*time.Hour)); got != (Attribution{Snapshot: 2}) {
		t.Errorf("unrouted address = %+v; want no ASN, snapshot 2", got)
	}
}
