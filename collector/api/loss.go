package api

import (
	"context"

	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// maxLossCount bounds a count an agent reports: an agent produces a few
// thousand results a day, and sums of counts this size over 100,000 agents
// stay far from overflowing.
const maxLossCount = 1 << 40

// recordLoss stores what an agent reported of the results its spool lost
// and counts their growth in the metrics. A failure is only logged: the
// agent's counts are cumulative and it reports them again within a minute.
func (s *Server) recordLoss(ctx context.Context, agent string, sp *op25bv1.SpoolStats) {
	l, valid := spoolLoss(sp)
	if !valid {
		s.Log.Warn("ignoring an agent's loss counts: spool_id is not a UUIDv7", "agent", agent)
		return
	}
	if l.Total() == 0 {
		return // nothing lost: every healthy agent's report
	}
	grew, err := s.Store.RecordSpoolLoss(ctx, agent, l)
	if err != nil {
		s.Log.Warn("recording an agent's lost results failed; it reports them again", "agent", agent, "err", err)
		return
	}
	if grew.Total() > 0 {
		s.Log.Warn("an agent lost results before upload", "agent", agent, "full", grew.Full, "no_space", grew.NoSpace,
			"write_error", grew.WriteError, "corrupt", grew.Corrupt)
	}
	s.Metrics.lost(grew)
}

// spoolLoss is the loss count an agent reported: its spool's durable count
// by cause, or, from agents that predate it, its full spool's drops since
// it started. valid is false when the count names no spool (its id is not
// a UUIDv7).
func spoolLoss(sp *op25bv1.SpoolStats) (l store.SpoolLoss, valid bool) {
	count := func(n uint64) int64 { return int64(min(n, maxLossCount)) }
	if lost := sp.GetLost(); lost != nil {
		if _, _, err := uuidv7.Parse(lost.GetSpoolId()); err != nil {
			return l, false
		}
		l = store.SpoolLoss{SpoolID: lost.GetSpoolId(), Full: count(lost.GetFull()), NoSpace: count(lost.GetNoSpace()),
			WriteError: count(lost.GetWriteError()), Corrupt: count(lost.GetCorrupt())}
	} else {
		l = store.SpoolLoss{Full: count(sp.GetDroppedFull())}
	}
	return l, true
}
