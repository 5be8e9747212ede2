package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ResultsChannel is the PostgreSQL notification channel on which the
// ingest transaction announces the results it inserted, when the store
// was told to (NotifyResults): the source of the live stream
// (collector/stream), which every collector sharing the database
// listens to. Only the public columns travel; never an address or an
// agent id.
const ResultsChannel = "op25b_results"

// notifyLimit bounds one notification's payload, under PostgreSQL's
// 8000 bytes.
const notifyLimit = 7800

// PublicResult is the part of a stored result that may be published live.
type PublicResult struct {
	MeasuredAt time.Time
	Prefix     netip.Prefix // the /24 or /48; invalid when unknown
	ASN        uint32       // 0: unknown
	Family     uint8        // 4 or 6
	Port       uint16
	Verdict    uint8 // op25b.v1.Verdict
	Failure    string
	RefMTA     string
}

// NotifyResults makes every later ingest transaction announce the results
// it inserts on ResultsChannel (off by default: a collector without live
// subscribers anywhere saves the cost, BENCHMARKS.md).
func (s *Store) NotifyResults(on bool) { s.notify.Store(on) }

// notifyInserted announces in tx the results of rs that it inserted (those
// not in replayed), in payloads under notifyLimit. PostgreSQL delivers
// them at COMMIT, and folds identical payloads of one transaction: each
// starts with its own chunk number.
func notifyInserted(ctx context.Context, tx pgx.Tx, rs []Result, replayed map[string]bool) error {
	var payloads []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			payloads = append(payloads, b.String())
			b.Reset()
		}
	}
	var line []byte
	for _, r := range rs {
		if replayed[r.ID] {
			continue
		}
		line = appendNotice(line[:0], r)
		if b.Len() > 0 && b.Len()+len(line) > notifyLimit {
			flush()
		}
		if b.Len() == 0 {
			b.WriteString(strconv.Itoa(len(payloads)))
		}
		b.WriteByte('\n')
		b.Write(line)
	}
	flush()
	if len(payloads) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) p", ResultsChannel, payloads); err != nil {
		return fmt.Errorf("notify results: %w", err)
	}
	return nil
}

// appendNotice appends r's public columns as one tab-separated line.
func appendNotice(b []byte, r Result) []byte {
	b = strconv.AppendInt(b, r.MeasuredAt.UnixMicro(), 10)
	b = append(b, '\t')
	if r.Prefix.IsValid() {
		b = r.Prefix.AppendTo(b)
	}
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(r.ASN), 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(r.Family), 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(r.Port), 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(r.Verdict), 10)
	b = append(b, '\t')
	b = append(b, clean(r.Failure)...)
	b = append(b, '\t')
	b = append(b, clean(r.RefMTA)...)
	return b
}

// clean keeps a free-text column on its line and in its field.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// ParseNotice returns the results of one payload of ResultsChannel.
func ParseNotice(payload string) ([]PublicResult, error) {
	lines := strings.Split(payload, "\n")
	out := make([]PublicResult, 0, len(lines)-1)
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 8 {
			return nil, fmt.Errorf("store: results notice: %d fields in a line, want 8", len(f))
		}
		var r PublicResult
		us, err1 := strconv.ParseInt(f[0], 10, 64)
		asn, err2 := strconv.ParseUint(f[2], 10, 32)
		fam, err3 := strconv.ParseUint(f[3], 10, 8)
		port, err4 := strconv.ParseUint(f[4], 10, 16)
		v, err5 := strconv.ParseUint(f[5], 10, 8)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("store: results notice: %w", err)
		}
		if f[1] != "" {
			p, err := netip.ParsePrefix(f[1])
			if err != nil {
				return nil, fmt.Errorf("store: results notice: %w", err)
			}
			r.Prefix = p
		}
		r.MeasuredAt = time.UnixMicro(us).UTC()
		r.ASN, r.Family, r.Port, r.Verdict = uint32(asn), uint8(fam), uint16(port), uint8(v)
		r.Failure, r.RefMTA = f[6], f[7]
		out = append(out, r)
	}
	return out, nil
}

// Listen calls notice with each notification on channels, on a connection
// of its own, until ctx ends or the connection fails (its error). ready is
// called once the LISTENs are in force: what was stored before may have
// been missed, nothing after.
func (s *Store) Listen(ctx context.Context, channels []string, ready func(), notice func(channel, payload string)) error {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	// A connection that listened goes back to no pool: close it.
	defer func() {
		conn.Conn().Close(context.Background())
		conn.Release()
	}()
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		notice(n.Channel, n.Payload)
	}
}

// Countries returns the country of each of asns that as_names knows.
func (s *Store) Countries(ctx context.Context, asns []uint32) (map[uint32]string, error) {
	ids := make([]int64, len(asns))
	for i, a := range asns {
		ids[i] = int64(a)
	}
	rows, err := s.Pool.Query(ctx, "SELECT asn, country FROM as_names WHERE asn = ANY($1) AND country <> ''", ids)
	if err != nil {
		return nil, fmt.Errorf("store: countries: %w", err)
	}
	out := make(map[uint32]string, len(asns))
	var asn int64
	var cc string
	if _, err := pgx.ForEachRow(rows, []any{&asn, &cc}, func() error {
		out[uint32(asn)] = cc
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: countries: %w", err)
	}
	return out, nil
}
