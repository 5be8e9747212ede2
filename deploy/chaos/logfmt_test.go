package chaos

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The lines come from log/slog's text handler, which every binary uses.
func TestParseLineSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("round done", "round", "0193a0c4-7b1e-7000-8000-000000000001", "results", 12, "pending", 0)
	log.Error("spooling the round's results failed", "results", 12, "err", errors.New(`write 000001.seg: no space left on device "quoted"`))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	l, ok := ParseLine(lines[0])
	if !ok {
		t.Fatalf("ParseLine(%q) failed", lines[0])
	}
	if l.Msg != "round done" || l.Level != "INFO" || l.Attrs["results"] != "12" || l.Attrs["round"] != "0193a0c4-7b1e-7000-8000-000000000001" {
		t.Errorf("ParseLine(%q) = %+v", lines[0], l)
	}
	if time.Since(l.Time) > time.Minute || time.Since(l.Time) < 0 {
		t.Errorf("ParseLine(%q).Time = %v; want about now", lines[0], l.Time)
	}
	l, ok = ParseLine(lines[1])
	if !ok || l.Level != "ERROR" || l.Attrs["err"] != `write 000001.seg: no space left on device "quoted"` {
		t.Errorf("ParseLine(%q) = %+v, %v; want the quoted error unquoted", lines[1], l, ok)
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"### chaos: start 2 of agent-1 at 2026-12-03T11:43:48Z",
		"2026/12/03 11:49:10 http: Accept error: accept tcp 10.25.0.1:9090: accept4: too many open files; retrying in 5ms",
		`time=2026-12-03T11:43:48.786Z level=INFO msg="unterminated`,
		`time=yesterday level=INFO msg=x`,
		`level=INFO msg=x`,                         // no time
		`time=2026-12-03T11:43:48.786Z level=INFO`, // no message
		`time=2026-12-03T11:43:48.786Z msg="a"b=c`, // no space after a quoted value
		"goroutine 1 [running]:",
	} {
		if l, ok := ParseLine(s); ok {
			t.Errorf("ParseLine(%q) = %+v; want not a log line", s, l)
		}
	}
}

func TestParseLogSkipsForeignLines(t *testing.T) {
	in := "### chaos: start 1 of agent-1 at x\n" +
		"time=2026-12-03T11:43:48.786Z level=INFO msg=\"agent running\" id=agent-1 spooled=0\n" +
		"panic: boom\n" +
		"time=2026-12-03T11:43:53.786Z level=INFO msg=\"agent stopped\" undelivered=0\n"
	lines, err := ParseLog(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Msg != "agent running" || lines[1].Msg != "agent stopped" {
		t.Errorf("ParseLog = %+v; want the two log lines", lines)
	}
}
