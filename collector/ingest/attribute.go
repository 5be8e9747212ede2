package ingest

import (
	"net/netip"
	"sync"
	"time"

	"github.com/op25b/observatory/collector/asn"
)

// keepSnapshots is how many ASN tables stay in memory, so that results
// delivered late (a spool after an outage) are attributed with the
// snapshot that was in force when they were measured.
const keepSnapshots = 4

// Snapshots attributes addresses with the ASN table in force at
// measurement time.
type Snapshots struct {
	mu   sync.RWMutex
	list []snapshot // oldest first
}

type snapshot struct {
	table *asn.Table
	id    int64
	since time.Time
}

// Add makes t, registered as snapshot id, the table in force from since.
func (s *Snapshots) Add(t *asn.Table, id int64, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, snapshot{t, id, since})
	if len(s.list) > keepSnapshots {
		s.list = s.list[len(s.list)-keepSnapshots:]
	}
}

// Attribute implements Attributor: the newest table in force at at, or the
// oldest kept when at precedes them all.
func (s *Snapshots) Attribute(a netip.Addr, at time.Time) Attribution {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.list) == 0 {
		return Attribution{}
	}
	snap := s.list[0]
	for _, x := range s.list[1:] {
		if !x.since.After(at) {
			snap = x
		}
	}
	info, ok := snap.table.Lookup(a)
	if !ok {
		return Attribution{Snapshot: snap.id}
	}
	return Attribution{ASN: info.ASN, Snapshot: snap.id}
}
