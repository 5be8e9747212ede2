package dataset

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// EventsChannel is the PostgreSQL notification channel a refresh that
// logged change events notifies when it commits: a follower of the log
// can LISTEN to it rather than poll.
const EventsChannel = "op25b_change_events"

// ChangeEvent is one entry of the log of policy changes: a change the
// refresh found that was not there before or, Retracted, one that is gone
// since the results of its days were recomputed. docs/dataset.md, Change
// events.
type ChangeEvent struct {
	// ID grows with the order the events were logged in.
	ID            int64
	ASN           uint32
	Name, Country string // of the ASN, "" when unknown
	Family        pb.AddressFamily
	Day           time.Time // the first day of the new class
	From, To      pb.PolicyClass
	Retracted     bool
	SeenAt        time.Time // when the refresh that logged it ran
}

// EventFilter selects change events: zero fields select any.
type EventFilter struct {
	ASN     uint32
	Country string // ISO 3166-1 alpha-2, as ParseCountry returns it
	Family  pb.AddressFamily
	// After selects the events logged after the one with this ID (0:
	// from the first), oldest first: a follower's cursor.
	After int64
	// Newest lists the newest events first instead, ignoring After.
	Newest bool
	Limit  int // at most this many (the page size when 0)
}

// ChangeEvents lists the change events f selects.
func (d *Dataset) ChangeEvents(ctx context.Context, f EventFilter) ([]ChangeEvent, error) {
	family, err := familyDB(f.Family)
	if err != nil {
		return nil, err
	}
	if f.Limit <= 0 {
		f.Limit = d.cfg.PageSize
	}
	order := "e.id"
	if f.Newest {
		order, f.After = "e.id DESC", 0
	}
	rows, err := d.read.Query(ctx, `SELECT e.id, e.asn, coalesce(n.name, ''), coalesce(n.country, ''), e.family, e.day,
			e.from_class, e.to_class, e.retracted, e.seen_at
		FROM policy_change_events e LEFT JOIN as_names n ON n.asn = e.asn
		WHERE e.id > $1 AND ($2::bigint = 0 OR e.asn = $2) AND ($3 = 0 OR e.family = $3) AND ($4 = '' OR n.country = $4)
		ORDER BY `+order+` LIMIT $5`, f.After, int64(f.ASN), family, f.Country, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("dataset: change events: %w", err)
	}
	var out []ChangeEvent
	var e ChangeEvent
	var asn int64
	var fam, from, to int16
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &asn, &e.Name, &e.Country, &fam, &e.Day, &from, &to, &e.Retracted, &e.SeenAt}, func() error {
		e.ASN, e.Family, e.From, e.To = uint32(asn), familyPB(fam), pb.PolicyClass(from), pb.PolicyClass(to)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: change events: %w", err)
	}
	return out, nil
}
