package web

import (
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// The timeline chart is drawn on the server as SVG in user units; CSS scales
// it to the page's width. Colours come from the stylesheet by class, since
// the Content-Security-Policy allows no inline style.
const (
	chartWidth  = 720
	chartLeft   = 48 // room for the row labels
	chartRight  = 8
	rowHeight   = 18
	rowGap      = 6
	plotHeight  = 96
	plotGap     = 22 // between the class rows and the share plot
	axisHeight  = 20 // the date labels
	maxChartDay = 400
)

type chart struct {
	Width, Height int
	Left, Right   string // x of the plot's edges
	PlotWidth     string
	LabelX        string // right edge of the share axis labels
	MarkTop       string // change marks run from here to PlotBottom
	TickY         string // baseline of the date labels
	Rows          []chartRow
	PlotBottom    string
	Grid          []gridLine
	Lines         []chartLine
	Ticks         []tick
	Marks         []changeMark
	Empty         bool
}

type chartRow struct {
	Label  string
	Y      int
	TextY  int
	Height int
	Cells  []chartCell
}

type chartCell struct {
	X, W  string
	Class string // CSS key of the class
	Title string // "2026-03-01: OP25B"
}

type gridLine struct {
	Y, Label, LabelY string
}

type chartLine struct {
	Family string // "IPv4"
	Key    string // "ipv4": the line's CSS class
	Path   string // the d attribute; "" when no day has data
	Points []chartPoint
}

type chartPoint struct {
	X, Y, Title string
}

type tick struct {
	X, Label, Anchor string
}

type changeMark struct {
	X, Title string
}

// newChart lays out one row per family (a cell per day, coloured by class)
// over the days [start, end), and below it the share of prefixes whose
// port 25 is blocked, one line per family.
func newChart(start, end time.Time, timelines map[pb.AddressFamily][]*pb.TimelinePoint, changes []*pb.PolicyChange, t func(string) string) *chart {
	start, end = dataset.Today(start), dataset.Today(end.Add(dataset.Day-1))
	days := int(end.Sub(start) / dataset.Day)
	if days < 1 {
		days = 1
	}
	if days > maxChartDay {
		start, days = end.Add(-maxChartDay*dataset.Day), maxChartDay
	}
	c := &chart{Width: chartWidth, Empty: true}
	inner := float64(chartWidth - chartLeft - chartRight)
	dayW := inner / float64(days)
	x := func(d int) float64 { return chartLeft + float64(d)*dayW }
	dayOf := func(ts time.Time) int { return int(dataset.Today(ts).Sub(start) / dataset.Day) }
	c.Left, c.Right = num(chartLeft), num(chartWidth-chartRight)
	c.PlotWidth, c.LabelX = num(inner), num(chartLeft-6)

	y := 4
	var rowFamilies []pb.AddressFamily
	for _, f := range families {
		if _, ok := timelines[f]; ok {
			rowFamilies = append(rowFamilies, f)
		}
	}
	for _, f := range rowFamilies {
		row := chartRow{Label: familyLabel(f), Y: y, TextY: y + rowHeight - 5, Height: rowHeight}
		for _, pt := range timelines[f] {
			d := dayOf(pt.GetDay().AsTime())
			if d < 0 || d >= days {
				continue
			}
			class := newClass(pt.GetPolicyClass())
			row.Cells = append(row.Cells, chartCell{
				X:     num(x(d) + 0.5),
				W:     num(max(dayW-1, 0.6)),
				Class: class.Key,
				Title: dayDate(start, d) + " " + familyLabel(f) + ": " + class.Label(),
			})
			c.Empty = false
		}
		c.Rows = append(c.Rows, row)
		y += rowHeight + rowGap
	}

	top := float64(y - rowGap + plotGap)
	bottom := top + plotHeight
	c.PlotBottom = num(bottom)
	c.MarkTop, c.TickY = "4", num(bottom+15)
	yOf := func(share float64) float64 { return bottom - share*plotHeight }
	for _, g := range []float64{0, 0.5, 1} {
		c.Grid = append(c.Grid, gridLine{Y: num(yOf(g)), Label: pct(g), LabelY: num(yOf(g) + 4)})
	}
	for _, f := range rowFamilies {
		line := chartLine{Family: familyLabel(f), Key: dataset.FamilyName(f)}
		var path strings.Builder
		prev := -2
		for _, pt := range timelines[f] {
			d := dayOf(pt.GetDay().AsTime())
			share := blockedShare(port(pt.GetPorts(), 25))
			if d < 0 || d >= days || share == nil {
				continue
			}
			px, py := num(x(d)+dayW/2), num(yOf(share.Value))
			// Days without data break the line rather than bridge them.
			if d == prev+1 {
				path.WriteString(" L" + px + " " + py)
			} else {
				path.WriteString(" M" + px + " " + py)
			}
			prev = d
			line.Points = append(line.Points, chartPoint{X: px, Y: py,
				Title: dayDate(start, d) + " " + familyLabel(f) + ": " + t("chart.blocked25") + " " + share.Text})
		}
		line.Path = strings.TrimSpace(path.String())
		c.Lines = append(c.Lines, line)
	}

	// Date labels: the first and last day, and a few between.
	n := min(days, 5)
	for i := range n {
		d := 0
		if n > 1 {
			d = i * (days - 1) / (n - 1)
		}
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case n - 1:
			anchor = "end"
		}
		tx := x(d) + dayW/2
		switch anchor {
		case "start":
			tx = x(d)
		case "end":
			tx = x(d + 1)
		}
		c.Ticks = append(c.Ticks, tick{X: num(tx), Label: dayDate(start, d), Anchor: anchor})
	}

	for _, ch := range changes {
		d := dayOf(ch.GetChangedAt().AsTime())
		if d < 0 || d >= days {
			continue
		}
		c.Marks = append(c.Marks, changeMark{X: num(x(d)),
			Title: dayDate(start, d) + " " + familyLabel(ch.GetFamily()) + ": " +
				newClass(ch.GetFromClass()).Label() + " → " + newClass(ch.GetToClass()).Label()})
	}
	c.Height = int(bottom) + axisHeight
	return c
}

func dayDate(start time.Time, d int) string {
	return start.Add(time.Duration(d) * dataset.Day).Format(time.DateOnly)
}
