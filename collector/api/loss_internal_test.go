package api

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/uuidv7"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// TestNoWarningForAgentsThatLostNothing: every healthy agent reports a
// zero loss count with each batch and poll; that is no reason to warn (it
// logged "spool_id is not a UUIDv7" for each, flooding the log). A count
// that names no spool still is.
func TestNoWarningForAgentsThatLostNothing(t *testing.T) {
	var log bytes.Buffer
	s := &Server{Log: slog.New(slog.NewTextHandler(&log, nil))}
	ctx := context.Background()
	s.recordLoss(ctx, "agent-1", &op25bv1.SpoolStats{Lost: &op25bv1.SpoolLoss{SpoolId: uuidv7.New(time.Now())}})
	s.recordLoss(ctx, "agent-1", &op25bv1.SpoolStats{})
	if log.Len() != 0 {
		t.Errorf("zero losses logged: %s", log.String())
	}
	s.recordLoss(ctx, "agent-1", &op25bv1.SpoolStats{Lost: &op25bv1.SpoolLoss{SpoolId: "not-an-id", Full: 3}})
	if !strings.Contains(log.String(), "spool_id is not a UUIDv7") {
		t.Errorf("a count naming no spool was not logged: %q", log.String())
	}
}
