package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/shares"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// maxWidth is the width tables are made to fit.
const maxWidth = 120

// Verdict groups of the adoption columns.
var (
	blocked = []pb.Verdict{pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_BLOCKED_RESET, pb.Verdict_VERDICT_BLOCKED_UNREACHABLE}
	open    = []pb.Verdict{pb.Verdict_VERDICT_OPEN}
)

// share is the share of a port's prefixes whose verdict is in a group,
// with its Wilson 95% interval.
type share struct {
	value, low, high float64
	ok               bool // the port was measured
}

// shareOf returns the share of ps's prefixes with one of verdicts.
func shareOf(ps *pb.PortStats, verdicts ...pb.Verdict) share {
	s := shares.Of(ps, verdicts...)
	return share{s.Value, s.Low, s.High, s.OK}
}

// String writes the share as "82% [71-90]", or "-" when not measured.
func (s share) String() string {
	if !s.ok {
		return "-"
	}
	return fmt.Sprintf("%s [%.0f-%.0f]", percent(s.value), s.low*100, s.high*100)
}

func percent(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

// port returns the stats of one port of a summary, nil if not measured.
func port(a *pb.ASNSummary, n uint32) *pb.PortStats {
	for _, p := range a.GetPorts() {
		if p.Port == n {
			return p
		}
	}
	return nil
}

// asnName writes "AS64500".
func asnName(n uint32) string { return "AS" + strconv.FormatUint(uint64(n), 10) }

// thousands writes 1234567 as "1,234,567".
func thousands[T ~int64 | ~uint64 | ~int](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// byteSize writes a size in decimal units: "14.2 MB".
func byteSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", f, " kMGT"[i])
}

// day writes a UTC day.
func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// windowText writes a window as its first and last UTC days.
func windowText(w *pb.TimeRange) string {
	if w == nil {
		return "the collector's default window"
	}
	return day(w.Start.AsTime()) + " to " + day(w.End.AsTime().Add(-time.Nanosecond)) + " (UTC)"
}

// Class colours; every code has the same length, so a column of
// coloured cells stays aligned in a tabwriter.
var classColor = map[pb.PolicyClass]string{
	pb.PolicyClass_POLICY_CLASS_OP25B:             "\x1b[32m", // green: the policy we measure
	pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED:  "\x1b[34m",
	pb.PolicyClass_POLICY_CLASS_OPEN:              "\x1b[31m",
	pb.PolicyClass_POLICY_CLASS_INTERCEPT:         "\x1b[35m",
	pb.PolicyClass_POLICY_CLASS_MIXED:             "\x1b[33m",
	pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA: "\x1b[90m",
	pb.PolicyClass_POLICY_CLASS_UNSPECIFIED:       "\x1b[39m", // also the header's
}

const colorReset = "\x1b[0m"

// column is one column of a table of ASN summaries.
type column struct {
	header string
	cell   func(*pb.ASNSummary) string
	// class marks the column coloured by class; squeeze the one cut to
	// fit the width.
	class, squeeze bool
}

// summaryColumns are the columns of the adoption table.
func summaryColumns() []column {
	return []column{
		{header: "ASN", cell: func(a *pb.ASNSummary) string { return asnName(a.Asn) }},
		{header: "NAME", cell: func(a *pb.ASNSummary) string { return a.Name }, squeeze: true},
		{header: "CC", cell: func(a *pb.ASNSummary) string { return a.Country }},
		{header: "FAMILY", cell: func(a *pb.ASNSummary) string { return dataset.FamilyName(a.Family) }},
		{header: "CLASS", cell: func(a *pb.ASNSummary) string { return dataset.ClassName(a.PolicyClass) }, class: true},
		{header: "AGENTS", cell: func(a *pb.ASNSummary) string { return thousands(a.Agents) }},
		{header: "PREFIXES", cell: func(a *pb.ASNSummary) string { return thousands(a.Prefixes) }},
		{header: "25 BLOCKED", cell: func(a *pb.ASNSummary) string { return shareOf(port(a, 25), blocked...).String() }},
		{header: "587 OPEN", cell: func(a *pb.ASNSummary) string { return shareOf(port(a, 587), open...).String() }},
		{header: "465 OPEN", cell: func(a *pb.ASNSummary) string { return shareOf(port(a, 465), open...).String() }},
	}
}

const padding = 2

// writeSummaries writes rows as an aligned table no wider than maxWidth,
// cutting the squeezable column (the name) as needed.
func writeSummaries(w io.Writer, cols []column, rows []*pb.ASNSummary, color bool) error {
	cells := make([][]string, len(rows))
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = utf8.RuneCountInString(c.header)
	}
	for r, a := range rows {
		cells[r] = make([]string, len(cols))
		for i, c := range cols {
			cells[r][i] = c.cell(a)
			width[i] = max(width[i], utf8.RuneCountInString(cells[r][i]))
		}
	}
	total := (len(cols) - 1) * padding
	for _, n := range width {
		total += n
	}
	for i, c := range cols {
		if c.squeeze && total > maxWidth {
			room := max(len(c.header), width[i]-(total-maxWidth), 10)
			for r := range cells {
				cells[r][i] = truncate(cells[r][i], room)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)
	line := func(a *pb.ASNSummary, texts []string) {
		for i, c := range cols {
			s := texts[i]
			if c.class && color {
				s = classColor[a.GetPolicyClass()] + s + colorReset
			}
			if i > 0 {
				tw.Write([]byte{'\t'})
			}
			tw.Write([]byte(s))
		}
		tw.Write([]byte{'\n'})
	}
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	line(nil, headers)
	for r, a := range rows {
		line(a, cells[r])
	}
	return tw.Flush()
}

// truncate cuts s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:n-1]), " ") + "…"
}

// writeJSON writes m as the API does: snake_case names, every field.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
