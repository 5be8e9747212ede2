package dataset

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/internal/shares"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// maxRefMTAPorts bounds the ports listed per reference MTA and family (the
// most measured first): ports come from agents, and every listed one is a
// metric series.
const maxRefMTAPorts = 8

// refmtaSQL sums the per-reference-MTA tallies of [$1, $2) for enrolled
// reference MTAs (refmta ids come from agents; only ours are listed),
// ranking each one's ports by results.
const refmtaSQL = `WITH t AS (
	SELECT refmta_id, family, port, sum(n_open) AS o, sum(n_blocked) AS b, sum(n_intercepted) AS i,
		sum(n_inconclusive) AS n, sum(n_charged) AS c
	FROM agg_refmta_day d
	WHERE day >= $1 AND day < $2
		AND EXISTS (SELECT 1 FROM principals p WHERE p.principal_id = d.refmta_id AND p.kind = $3)
	GROUP BY 1, 2, 3
)
SELECT refmta_id, family, port, o, b, i, n, c,
	row_number() OVER (PARTITION BY refmta_id, family ORDER BY o + b + i + n DESC, port) <= $4
FROM t ORDER BY refmta_id, family, port`

// RefMTAs returns what each enrolled reference MTA's probes found per
// family and port over the last RefMTAWindow days of the published
// windows, and flags a reference MTA whose blocked share is above the
// other reference MTAs' pooled share beyond doubt: each side has at least
// RefMTAMinResults conclusive results, their Wilson intervals do not
// overlap and the shares differ by RefMTAMinGap or more. Only a higher
// blocked share is flagged: a fault on the reference MTA's side (a network
// that drops inbound port 25) can block, and cannot fake a signed OPEN.
func (d *Dataset) RefMTAs(ctx context.Context) ([]*pb.RefMTAStats, *pb.TimeRange, error) {
	asOf, err := d.asOf(ctx)
	if err != nil {
		return nil, nil, err
	}
	end := asOf.Add(Day)
	start := end.Add(-time.Duration(d.cfg.RefMTAWindow) * Day)
	window := &pb.TimeRange{Start: timestamppb.New(start), End: timestamppb.New(end)}
	rows, err := d.read.Query(ctx, refmtaSQL, start, end, int16(pb.PrincipalKind_PRINCIPAL_KIND_REFMTA), maxRefMTAPorts)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: reference MTAs: %w", err)
	}
	type key struct {
		family int16
		port   int32
	}
	var out []*pb.RefMTAStats
	blocked, conclusive := map[key]uint64{}, map[key]uint64{}
	var r struct {
		id            string
		family        int16
		port          int32
		o, b, i, n, c int64
		listed        bool
	}
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.family, &r.port, &r.o, &r.b, &r.i, &r.n, &r.c, &r.listed}, func() error {
		k := key{r.family, r.port}
		blocked[k] += uint64(r.b)
		conclusive[k] += uint64(r.o + r.b + r.i)
		if r.listed {
			out = append(out, &pb.RefMTAStats{RefmtaId: r.id, Family: familyPB(r.family), Port: uint32(r.port),
				Results: uint64(r.o + r.b + r.i + r.n), Conclusive: uint64(r.o + r.b + r.i), Charged: uint64(r.c),
				Open: groupShare(uint64(r.o), uint64(r.o+r.b+r.i)), Blocked: groupShare(uint64(r.b), uint64(r.o+r.b+r.i)),
				Intercepted: groupShare(uint64(r.i), uint64(r.o+r.b+r.i))})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: reference MTAs: %w", err)
	}
	for _, s := range out {
		k := key{family4or6(s.GetFamily()), int32(s.GetPort())}
		othersN := conclusive[k] - s.GetConclusive()
		s.OthersBlocked = groupShare(blocked[k]-s.GetBlocked().GetCount(), othersN)
		s.Flagged = s.GetConclusive() >= uint64(d.cfg.RefMTAMinResults) && othersN >= uint64(d.cfg.RefMTAMinResults) &&
			s.GetBlocked().GetWilsonLow() > s.GetOthersBlocked().GetWilsonHigh() &&
			s.GetBlocked().GetShare()-s.GetOthersBlocked().GetShare() >= d.cfg.RefMTAMinGap
	}
	return out, window, nil
}

func groupShare(k, n uint64) *pb.GroupShare {
	g := &pb.GroupShare{Count: k}
	if n > 0 {
		g.Share = float64(k) / float64(n)
	}
	g.WilsonLow, g.WilsonHigh = shares.Wilson(float64(k), float64(n))
	return g
}
