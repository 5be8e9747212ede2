// Package store is the collector's PostgreSQL storage: schema migrations,
// time-partitioned raw results written exactly once, and the restricted
// tables that hold volunteers' full addresses. It speaks native Go types;
// protobuf stays at the gRPC boundary (collector/ingest).
//
// Migrations are the numbered SQL files in migrations/, embedded in the
// binary and applied in order at start, all pending ones in one
// transaction (a failed migration leaves the schema as it was), under an
// advisory lock so that collector replicas starting together apply each
// exactly once.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key of schema migrations and
// partition creation ("op25b" in ASCII).
const migrationLock int64 = 0x6f70323562

// Store is the collector's database.
type Store struct {
	Pool *pgxpool.Pool
	log  *slog.Logger

	mu         sync.Mutex
	partitions map[string]bool // partitions known to exist, by name
	queue      []*insertCall   // InsertResults calls waiting for a commit (group.go)
	committers int             // commitLoops running
	maxCommit  int             // commitLoops at most: groupCommitters

	notify atomic.Bool // announce inserted results (NotifyResults)
}

// Open connects to url, applies pending migrations and returns the Store.
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{Pool: pool, log: log, partitions: map[string]bool{}, maxCommit: groupCommitters}
	if err := s.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() { s.Pool.Close() }

// Migrate applies the embedded migrations that the database lacks.
func (s *Store) Migrate(ctx context.Context) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	type migration struct {
		version int
		name    string
	}
	var all []migration
	for _, f := range files {
		base := strings.TrimPrefix(f, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("store: migration %s: name must start with its number", base)
		}
		all = append(all, migration{n, f})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].version < all[j].version })
	for i, m := range all {
		if m.version != i+1 {
			return fmt.Errorf("store: migrations must be numbered 1, 2, 3...; %s is number %d", m.name, i+1)
		}
	}
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("store: schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("store: schema version: %w", err)
		}
		if current > len(all) {
			return fmt.Errorf("store: the database is at schema version %d, newer than this collector (%d): upgrade the collector", current, len(all))
		}
		for _, m := range all[current:] {
			sql, err := migrations.ReadFile(m.name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("store: apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("store: record %s: %w", m.name, err)
			}
			s.log.Info("applied schema migration", "version", m.version, "file", m.name)
		}
		return nil
	})
}

// Result is one raw result as stored.
type Result struct {
	ID              string // UUIDv7
	MeasuredAt      time.Time
	AgentID         string
	RefMTA          string
	Port            uint16
	Family          uint8 // 4 or 6
	Verdict         uint8 // op25b.v1.Verdict
	Failure, Detail string
	Nonce           []byte
	RoundID         string
	ScheduleVersion string
	AgentVersion    string
	Egress          netip.Addr // restricted
	EgressSource    EgressSource
	Prefix          netip.Prefix
	ASN             uint32 // 0: unknown
	ASNSnapshot     int64  // 0: none
	Evidence        []byte
	// PublicEvidence is what an intercepting or tampering middlebox showed
	// the probe, address literals redacted: it is published.
	PublicEvidence string
	// RefMTAASN and RefMTAPrefix are the network of the reference MTA
	// address the agent dialled (ASN 0: unknown; an invalid prefix: no
	// address), which the comparison across reference MTAs needs.
	RefMTAASN    uint32
	RefMTAPrefix netip.Prefix
	// SubmissionID is the one-off contribution the result came with
	// (UUIDv7), empty for an enrolled agent's.
	SubmissionID string
}

// EgressSource says how the collector learnt a result's egress address.
type EgressSource uint8

// The sources of the egress address (ingest prefers the control port's,
// then the probe's statement, then the connection).
const (
	EgressUnknown   EgressSource = 0
	EgressStatement EgressSource = 1 // the reference MTA's signed statement for this probe
	EgressControl   EgressSource = 2 // the control port's signed statement in the same round
	EgressIngest    EgressSource = 3 // the address of the agent's connection to the collector
)

// partitionDay names the daily partition holding t.
func partitionDay(table string, t time.Time) (name string, from, to time.Time) {
	from = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return fmt.Sprintf("%s_%s", table, from.Format("20060102")), from, from.AddDate(0, 0, 1)
}

// ensurePartitions creates the daily partitions of table that times fall
// in, once per collector process.
func (s *Store) ensurePartitions(ctx context.Context, table string, times []time.Time) error {
	need := map[string][2]time.Time{}
	s.mu.Lock()
	for _, t := range times {
		name, from, to := partitionDay(table, t.UTC())
		if !s.partitions[name] {
			need[name] = [2]time.Time{from, to}
		}
	}
	s.mu.Unlock()
	if len(need) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// Serialised with other collectors: concurrent CREATE TABLE ...
		// PARTITION OF the same range would fail in one of them.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		for name, r := range need {
			sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
				pgx.Identifier{name}.Sanitize(), table, r[0].Format(time.RFC3339), r[1].Format(time.RFC3339))
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("create partition %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: partitions: %w", err)
	}
	s.mu.Lock()
	for name := range need {
		s.partitions[name] = true
	}
	s.mu.Unlock()
	return nil
}

var resultColumns = []string{"result_id", "measured_at", "agent_id", "refmta_id", "port", "family", "verdict",
	"failure", "detail", "nonce", "round_id", "schedule_version", "agent_version", "egress", "egress_source",
	"prefix", "asn", "asn_snapshot_id", "evidence", "public_evidence", "refmta_asn", "refmta_prefix", "submission_id"}

// insertColumns are those copied from the staging table into results:
// what the agent sent and ingest decided, and the marker set in between.
var insertColumns = strings.Join(resultColumns, ", ") + ", refmta_charged"

// InsertResults stores rs exactly once: results already stored (a replayed
// batch) are skipped, and inserted counts the others. When it returns nil
// every result in rs is committed, and only then may the caller
// acknowledge them. Calls made while others are being committed are
// merged into one transaction (group.go); the results of one round are
// compared across reference MTAs (chargedSQL) with the rows stored in the
// same transaction. When ctx ends first, InsertResults returns its error
// and the rows may still be committed: the caller must not acknowledge
// them, and storing them again later is harmless; rs must then stay
// unchanged, since the commit still reads it.
func (s *Store) InsertResults(ctx context.Context, rs []Result) (inserted int64, err error) {
	if len(rs) == 0 {
		return 0, nil
	}
	times := make([]time.Time, len(rs))
	for i, r := range rs {
		times[i] = r.MeasuredAt
	}
	if err := s.ensurePartitions(ctx, "results", times); err != nil {
		return 0, err
	}
	c := &insertCall{rs: rs, done: make(chan struct{})}
	s.enqueue(c)
	select {
	case <-c.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("store: insert results: %w", ctx.Err())
	}
	if c.err != nil {
		return 0, fmt.Errorf("store: insert results: %w", c.err)
	}
	return c.inserted, nil
}

// CopyRows returns rs as the rows InsertResults copies into PostgreSQL, and
// their columns of results: what the ingest limit harness (deploy/e2e)
// writes to measure the limit of the same rows.
func CopyRows(rs []Result) (columns []string, rows [][]any) {
	rows = make([][]any, len(rs))
	for i, r := range rs {
		rows[i] = []any{uuidValue(r.ID), r.MeasuredAt, r.AgentID, r.RefMTA, int32(r.Port), int16(r.Family), int16(r.Verdict),
			r.Failure, r.Detail, r.Nonce, r.RoundID, r.ScheduleVersion, r.AgentVersion, addrOrNil(r.Egress),
			int16(r.EgressSource), prefixOrNil(r.Prefix), asnOrNil(r.ASN), snapshotOrNil(r.ASNSnapshot), r.Evidence,
			r.PublicEvidence, asnOrNil(r.RefMTAASN), prefixOrNil(r.RefMTAPrefix), uuidOrNil(r.SubmissionID)}
	}
	return resultColumns, rows
}

// insertSQL inserts the staged results that are not stored yet and adds
// them to the tallies, returning how many it inserted.
var insertSQL = "WITH ins AS (INSERT INTO results (" + insertColumns + ") SELECT " + insertColumns +
	" FROM results_staging ON CONFLICT DO NOTHING RETURNING " + tallyColumns + "), " + tallySQL("ins", true) +
	" SELECT count(*) FROM ins"

// insertResults stores rs in tx, whose partitions exist, skipping those
// already stored, and adds them to the tallies.
func insertResults(ctx context.Context, tx pgx.Tx, rs []Result) (inserted int64, err error) {
	// A staging table: COPY is the fastest way in, and only INSERT ... ON
	// CONFLICT can skip what is already stored. It is made once per
	// connection and emptied at each commit: making and dropping one per
	// transaction cost a fifth of the machine's CPU in catalog writes, and
	// re-planned every statement that reads it (issue 12).
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS results_staging (LIKE results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"); err != nil {
		return 0, fmt.Errorf("staging table: %w", err)
	}
	columns, rows := CopyRows(rs)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"results_staging"}, columns, pgx.CopyFromRows(rows)); err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	if spansNetworks(rs) {
		// Only the rows this transaction stores are compared, as
		// rebuild compares the rows stored together: those of a
		// replayed batch keep the marks they got.
		if _, err := tx.Exec(ctx, `DELETE FROM results_staging s USING results r
			WHERE r.result_id = s.result_id AND r.measured_at = s.measured_at`); err != nil {
			return 0, fmt.Errorf("compare reference MTAs: %w", err)
		}
		// A fresh temporary table has no statistics; without them the
		// planner nests loops that take seconds on a batch of hundreds.
		if _, err := tx.Exec(ctx, "ANALYZE results_staging"); err != nil {
			return 0, fmt.Errorf("compare reference MTAs: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE results_staging s SET refmta_charged = true FROM (`+chargedSQL("results_staging")+`) ch
			WHERE s.result_id = ch.result_id AND s.measured_at = ch.measured_at`); err != nil {
			return 0, fmt.Errorf("compare reference MTAs: %w", err)
		}
	}
	// The rows actually inserted (not those of a replayed batch) are
	// added to the rollups' tallies in the same statement.
	err = tx.QueryRow(ctx, insertSQL).Scan(&inserted)
	if err != nil {
		return 0, fmt.Errorf("insert: %w", err)
	}
	return inserted, nil
}

// spansNetworks reports whether rs holds results of a round from reference
// MTAs in two networks or more, the only case chargedSQL can charge.
func spansNetworks(rs []Result) bool {
	first := ""
	for _, r := range rs {
		net := r.RefMTAPrefix.String()
		if r.RefMTAASN != 0 {
			net = fmt.Sprintf("AS%d", r.RefMTAASN)
		}
		switch {
		case r.RoundID == "" || r.RefMTAASN == 0 && !r.RefMTAPrefix.IsValid():
		case first == "":
			first = net
		case net != first:
			return true
		}
	}
	return false
}

func addrOrNil(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a
}

func prefixOrNil(p netip.Prefix) any {
	if !p.IsValid() {
		return nil
	}
	return p
}

func asnOrNil(a uint32) any {
	if a == 0 {
		return nil
	}
	return int64(a)
}

// uuidValue is s, a UUID in text, as pgx encodes straight into a uuid
// column. A string would be refused by the binary encoder first, at the
// cost of an error value per row (a fifth of the collector's CPU in the
// ingest benchmark), then parsed. Text that is no UUID stays text, for
// PostgreSQL to refuse with its own message.
func uuidValue(s string) any {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		return s
	}
	return u
}

func uuidOrNil(s string) any {
	if s == "" {
		return nil
	}
	return uuidValue(s)
}

func snapshotOrNil(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// ErrNotFound is returned by lookups that find nothing.
var ErrNotFound = errors.New("not found")

// RegisterSnapshot records an ASN snapshot (by its content hash) and
// returns its id; registering the same content again returns the same id.
func (s *Store) RegisterSnapshot(ctx context.Context, sha256, format, source string, prefixes int) (int64, error) {
	var id int64
	err := s.Pool.QueryRow(ctx, `INSERT INTO asn_snapshots (sha256, format, source, prefixes) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sha256) DO UPDATE SET sha256 = EXCLUDED.sha256 RETURNING snapshot_id`, sha256, format, source, prefixes).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: register snapshot: %w", err)
	}
	return id, nil
}

// VerdictCount is how many results of one ASN, family, port and verdict a
// window holds, and from how many agents.
type VerdictCount struct {
	ASN     uint32 // 0: unattributed
	Name    string // of the AS, when a snapshot named it
	Country string
	Family  uint8
	Port    uint16
	Verdict uint8
	Results int64
	Agents  int64
	// Charged is how many of Results were charged to their reference
	// MTA's side, left out of the network's shares.
	Charged int64
}

// VerdictCounts counts the results measured since since, per ASN, family,
// port and verdict: the raw material of the per-ASN summary.
func (s *Store) VerdictCounts(ctx context.Context, since time.Time) ([]VerdictCount, error) {
	rows, err := s.Pool.Query(ctx, `SELECT coalesce(r.asn, 0), coalesce(n.name, ''), coalesce(n.country, ''), r.family, r.port, r.verdict,
		count(*), count(DISTINCT r.agent_id), count(*) FILTER (WHERE r.refmta_charged)
		FROM results r LEFT JOIN as_names n ON n.asn = r.asn
		WHERE r.measured_at >= $1 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 4, 5, 6`, since)
	if err != nil {
		return nil, fmt.Errorf("store: verdict counts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (VerdictCount, error) {
		var c VerdictCount
		var asn int64
		var fam, verdict int16
		var port int32
		err := r.Scan(&asn, &c.Name, &c.Country, &fam, &port, &verdict, &c.Results, &c.Agents, &c.Charged)
		c.ASN, c.Family, c.Port, c.Verdict = uint32(asn), uint8(fam), uint16(port), uint8(verdict)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: verdict counts: %w", err)
	}
	return out, nil
}

// ASHolder is the name and country of an AS.
type ASHolder struct {
	ASN           uint32
	Name, Country string
}

// UpsertASNames records AS names and countries from a snapshot, replacing
// older ones.
func (s *Store) UpsertASNames(ctx context.Context, hs []ASHolder) error {
	if len(hs) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE as_names_staging (asn bigint, name text, country text) ON COMMIT DROP"); err != nil {
			return err
		}
		rows := make([][]any, len(hs))
		for i, h := range hs {
			rows[i] = []any{int64(h.ASN), h.Name, h.Country}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"as_names_staging"}, []string{"asn", "name", "country"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO as_names (asn, name, country) SELECT asn, name, country FROM as_names_staging
			ON CONFLICT (asn) DO UPDATE SET name = EXCLUDED.name, country = EXCLUDED.country, updated_at = now()
			WHERE (as_names.name, as_names.country) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.country)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: AS names: %w", err)
	}
	return nil
}
