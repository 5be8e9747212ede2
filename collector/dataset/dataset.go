// Package dataset turns raw results into what the observatory publishes:
// per-ASN adoption with Wilson intervals, policy classes, timelines and
// changes, peer benchmarks, country rollups, and the public export of raw
// results. It is the one query layer behind the HTTP API, the gRPC
// DatasetService and the web page.
//
// Rollups are maintained incrementally: ingest adds each new result to a
// per-agent-per-day tally in the same transaction that stores it and marks
// its (ASN, family, day) dirty; Refresh recomputes the derived tables for
// dirty keys only. Rebuild recomputes everything from raw results and gives
// the same state. docs/dataset.md says how the numbers are made.
//
// The queries may read from a streaming replica of the database
// (WithReplica), which takes their load off the primary; refreshes always
// write to the primary.
package dataset

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the version of the published schema in docs/dataset.md.
const SchemaVersion = "1.6"

// Licence is the SPDX identifier of the dataset's licence.
const Licence = "CC-BY-4.0"

// Config holds the evidence thresholds and the server's limits. The zero
// value of a field means its default.
type Config struct {
	// MinPrefixes is how many distinct /24 or /48 prefixes with a conclusive
	// verdict a port needs before its shares can decide a class (default 3).
	MinPrefixes int
	// Dominant is the share of prefixes one group of verdicts (open,
	// blocked, intercepted) needs to characterise a port (default 0.8).
	Dominant float64
	// Windows are the rolling windows kept precomputed, in days (default 7,
	// 30, 90); DefaultWindow is the one used when a request names none
	// (default 30, and it must be one of Windows).
	Windows       []int
	DefaultWindow int
	// MaxWindowDays bounds a custom window (default 366); MaxExportDays an
	// export's time range (default 31).
	MaxWindowDays int
	MaxExportDays int
	// PageSize is the default and MaxPageSize the largest page of a list
	// (defaults 100 and 5000).
	PageSize, MaxPageSize int
	// SoftwareVersion is reported by GetInfo.
	SoftwareVersion string
	// RefMTAWindow is how many days, ending with the day the rolling
	// windows end on, the per-reference-MTA figures cover (default 7).
	RefMTAWindow int
	// RefMTAMinResults is how many conclusive results a reference MTA, and
	// the other reference MTAs pooled, need for a family and port before it
	// can be flagged (default 30); RefMTAMinGap is how far its blocked
	// share must be above theirs (default 0.2), besides their Wilson
	// intervals not overlapping.
	RefMTAMinResults int
	RefMTAMinGap     float64
}

func (c Config) withDefaults() Config {
	if c.MinPrefixes <= 0 {
		c.MinPrefixes = 3
	}
	if c.Dominant <= 0 {
		c.Dominant = 0.8
	}
	if len(c.Windows) == 0 {
		c.Windows = []int{7, 30, 90}
	}
	if c.DefaultWindow <= 0 {
		c.DefaultWindow = 30
	}
	if c.MaxWindowDays <= 0 {
		c.MaxWindowDays = 366
	}
	if c.MaxExportDays <= 0 {
		c.MaxExportDays = 31
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = 5000
	}
	if c.SoftwareVersion == "" {
		c.SoftwareVersion = "dev"
	}
	if c.RefMTAWindow <= 0 {
		c.RefMTAWindow = 7
	}
	if c.RefMTAMinResults <= 0 {
		c.RefMTAMinResults = 30
	}
	if c.RefMTAMinGap <= 0 {
		c.RefMTAMinGap = 0.2
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Dominant <= 0.5 || c.Dominant > 1 {
		return fmt.Errorf("dataset: dominant share %v must be above 0.5 and at most 1", c.Dominant)
	}
	if c.RefMTAMinGap > 1 {
		return fmt.Errorf("dataset: reference MTA gap %v must be at most 1", c.RefMTAMinGap)
	}
	if c.RefMTAWindow > c.MaxWindowDays {
		return fmt.Errorf("dataset: reference MTA window %dd is longer than the %d days a window may be", c.RefMTAWindow, c.MaxWindowDays)
	}
	found := false
	for _, w := range c.Windows {
		if w < 1 || w > c.MaxWindowDays {
			return fmt.Errorf("dataset: window %dd must be between 1 and %d days", w, c.MaxWindowDays)
		}
		found = found || w == c.DefaultWindow
	}
	if !found {
		return fmt.Errorf("dataset: default window %dd is not one of the precomputed windows %v", c.DefaultWindow, c.Windows)
	}
	return nil
}

// Dataset is the query layer over the collector's database.
type Dataset struct {
	// pool is the collector's database, the primary: Refresh and Rebuild
	// write there. read answers the queries: pool, or a streaming replica
	// of it (WithReplica).
	pool, read *pgxpool.Pool
	cfg        Config
	now        func() time.Time
}

// New returns the query layer over pool. now may be nil (time.Now).
func New(pool *pgxpool.Pool, cfg Config, now func() time.Time) (*Dataset, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Dataset{pool: pool, read: pool, cfg: cfg.withDefaults(), now: now}, nil
}

// WithReplica returns a copy of d whose queries (everything the HTTP API,
// the web page and the gRPC DatasetService read) go to replica, a
// streaming replica of d's database. Refresh and Rebuild still write to
// d's database, and GetSubmission looks there for a submission the replica
// has not replayed yet. GetInfo and Replica say how far behind it is.
func (d *Dataset) WithReplica(replica *pgxpool.Pool) *Dataset {
	c := *d
	c.read = replica
	return &c
}

// Config returns the configuration in force, defaults filled in.
func (d *Dataset) Config() Config { return d.cfg }
