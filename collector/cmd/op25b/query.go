package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
	pb "github.com/op25b/observatory/proto/op25b/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// queryFlags are the selection flags the query commands share.
type queryFlags struct {
	country, class, family, window, asn, format string
}

func (q *queryFlags) addCountry(fs *flag.FlagSet) {
	fs.StringVar(&q.country, "country", "", "ISO 3166-1 alpha-2 country code, such as JP")
}
func (q *queryFlags) addFamily(fs *flag.FlagSet) {
	fs.StringVar(&q.family, "family", "", "ipv4 or ipv6 (default both)")
}
func (q *queryFlags) addWindow(fs *flag.FlagSet) {
	fs.StringVar(&q.window, "window", "", "the last N UTC days (30d) or a range of days, end excluded (2026-03-01/2026-04-01); default the collector's (30d)")
}
func (q *queryFlags) addFormat(fs *flag.FlagSet, formats ...string) {
	fs.StringVar(&q.format, "format", formats[0], "output: "+strings.Join(formats, ", "))
}

// query checks the flags and returns the query they make.
func (q *queryFlags) query(e *env, formats ...string) (datasetclient.Query, error) {
	var out datasetclient.Query
	var err error
	if q.country != "" {
		c := strings.ToUpper(q.country)
		if len(c) != 2 || strings.Trim(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return out, usageErrorf("--country %q: want a two-letter code such as JP", q.country)
		}
		out.Country = c
	}
	if out.Class, err = dataset.ParseClass(q.class); err != nil {
		return out, flagError("class", err)
	}
	if out.Family, err = dataset.ParseFamily(q.family); err != nil {
		return out, flagError("family", err)
	}
	if _, err := dataset.ParseWindow(q.window, e.now()); err != nil {
		return out, flagError("window", err)
	}
	out.Window = strings.TrimSpace(q.window) // "30d" goes as it is: the collector's days decide
	if q.asn != "" {
		if out.ASN, err = dataset.ParseASN(q.asn); err != nil {
			return out, flagError("asn", err)
		}
	}
	if len(formats) > 0 && !slices.Contains(formats, q.format) {
		return out, usageErrorf("--format %q: want %s", q.format, strings.Join(formats, ", "))
	}
	return out, nil
}

func parseASNArg(s string) (uint32, error) {
	n, err := dataset.ParseASN(s)
	if err != nil {
		return 0, usageError{strings.TrimPrefix(err.Error(), dataset.ErrInvalid.Error()+": ")}
	}
	return n, nil
}

var asnsCommand = &command{
	name:    "asns",
	args:    "[--country CC] [--class CLASS] [--family ipv4|ipv6] [--window 30d] [--format table|csv|json] [--sort asn|blocked|agents]",
	summary: "the adoption table: policy class and verdict shares per ASN",
	about: `Lists the networks (ASN and address family) measured in the window with their
policy class (OP25B, INTERCEPT, OPEN, ALL_SMTP_BLOCKED, MIXED,
INSUFFICIENT_DATA), their agents and /24 (IPv4) or /48 (IPv6) prefixes, and
the share of prefixes whose port 25 is blocked and whose submission ports 587
and 465 are open, with 95% Wilson intervals: "82% [71-90]". Each prefix
weighs once, however many agents run in it.`,
	examples: `  op25b asns --country JP
  op25b asns --class OP25B --family ipv6 --sort blocked
  op25b asns --window 2026-01-01/2026-04-01 --format csv > q1.csv`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addCountry(fs)
		fs.StringVar(&q.class, "class", "", "policy class: "+strings.Join(dataset.ClassNames(), ", "))
		q.addFamily(fs)
		q.addWindow(fs)
		q.addFormat(fs, "table", "csv", "json")
		sortBy := fs.String("sort", "asn", "order: asn, blocked (share of port 25 blocked, most first) or agents (most first)")
		return func(ctx context.Context, _ []string) error {
			query, err := q.query(e, "table", "csv", "json")
			if err != nil {
				return err
			}
			if !slices.Contains([]string{"asn", "blocked", "agents"}, *sortBy) {
				return usageErrorf("--sort %q: want asn, blocked or agents", *sortBy)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var rows []*pb.ASNSummary
			for a, err := range c.AllASNs(ctx, query) {
				if err != nil {
					return err
				}
				rows = append(rows, a)
			}
			sortSummaries(rows, *sortBy)
			switch q.format {
			case "json":
				return writeJSON(e.stdout, &pb.ListASNsResponse{Asns: rows})
			case "csv":
				return writeSummariesCSV(e.stdout, rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(e.stdout, "no ASN measured in this window matches")
				return err
			}
			if err := writeSummaries(e.stdout, summaryColumns(), rows, e.color); err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "\n%d rows; window %s. Shares of /24 or /48 prefixes, 95%% Wilson intervals.\n",
				len(rows), windowText(rows[0].Window))
			return err
		}
	},
}

func sortSummaries(rows []*pb.ASNSummary, by string) {
	slices.SortStableFunc(rows, func(a, b *pb.ASNSummary) int {
		switch by {
		case "blocked":
			sa, sb := shareOf(port(a, 25), blocked...), shareOf(port(b, 25), blocked...)
			if c := cmp.Compare(sb.value, sa.value); sa.ok && sb.ok && c != 0 {
				return c
			}
			if sa.ok != sb.ok { // the unmeasured last
				if sa.ok {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(b.Prefixes, a.Prefixes); c != 0 {
				return c
			}
		case "agents":
			if c := cmp.Compare(b.Agents, a.Agents); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Asn, b.Asn), cmp.Compare(a.Family, b.Family))
	})
}

func writeSummariesCSV(w io.Writer, rows []*pb.ASNSummary) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"asn", "name", "country", "family", "class", "agents", "prefixes",
		"port25_blocked", "port25_blocked_low", "port25_blocked_high",
		"port587_open", "port587_open_low", "port587_open_high",
		"port465_open", "port465_open_low", "port465_open_high", "window_start", "window_end"})
	for _, a := range rows {
		rec := []string{strconv.FormatUint(uint64(a.Asn), 10), a.Name, a.Country, dataset.FamilyName(a.Family),
			dataset.ClassName(a.PolicyClass), strconv.FormatUint(a.Agents, 10), strconv.FormatUint(a.Prefixes, 10)}
		for _, s := range []share{shareOf(port(a, 25), blocked...), shareOf(port(a, 587), open...), shareOf(port(a, 465), open...)} {
			if s.ok {
				rec = append(rec, fmt.Sprintf("%.4f", s.value), fmt.Sprintf("%.4f", s.low), fmt.Sprintf("%.4f", s.high))
			} else {
				rec = append(rec, "", "", "")
			}
		}
		rec = append(rec, day(a.GetWindow().GetStart().AsTime()), day(a.GetWindow().GetEnd().AsTime()))
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

var asnCommand = &command{
	name:    "asn",
	args:    "ASN [--family ipv4|ipv6] [--window 30d] [--format text|json]",
	summary: "one ASN: verdict shares per port, daily timeline, changes, evidence",
	about: `Shows one network per address family: its policy class, agents and prefixes,
the share of prefixes with each verdict on ports 25, 587 and 465, its class
day by day as a row of letters, its changes of class, and what intercepting
middleboxes showed the probes (banners, certificates), addresses redacted.
ASN is 64500 or AS64500.`,
	examples: `  op25b asn AS64500
  op25b asn 64500 --family ipv6 --window 90d
  op25b asn AS64500 --format json | jq .timeline`,
	nargs: 1,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addFamily(fs)
		q.addWindow(fs)
		q.addFormat(fs, "text", "json")
		return func(ctx context.Context, args []string) error {
			asn, err := parseASNArg(args[0])
			if err != nil {
				return err
			}
			query, err := q.query(e, "text", "json")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.GetASN(ctx, asn, query)
			if err != nil {
				return err
			}
			if q.format == "json" {
				return writeJSON(e.stdout, r)
			}
			timelines := map[pb.AddressFamily][]*pb.TimelinePoint{}
			for _, p := range r.Timeline {
				timelines[p.Family] = append(timelines[p.Family], p)
			}
			return writeASN(e.stdout, r, timelines, e.color)
		}
	},
}

func families(sums []*pb.ASNSummary) []pb.AddressFamily {
	var out []pb.AddressFamily
	for _, s := range sums {
		if !slices.Contains(out, s.Family) {
			out = append(out, s.Family)
		}
	}
	slices.Sort(out)
	return out
}

// Letters of the timeline.
var classLetter = map[pb.PolicyClass]byte{
	pb.PolicyClass_POLICY_CLASS_OP25B:             'O',
	pb.PolicyClass_POLICY_CLASS_INTERCEPT:         'I',
	pb.PolicyClass_POLICY_CLASS_OPEN:              'P',
	pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED:  'A',
	pb.PolicyClass_POLICY_CLASS_MIXED:             'M',
	pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA: '.',
}

const timelineLegend = "O OP25B  I INTERCEPT  P OPEN  A ALL_SMTP_BLOCKED  M MIXED  . too few prefixes  - no data"

func writeASN(w io.Writer, r *pb.GetASNResponse, timelines map[pb.AddressFamily][]*pb.TimelinePoint, color bool) error {
	if len(r.Summaries) == 0 {
		_, err := fmt.Fprintln(w, "no measurements in this window")
		return err
	}
	first := r.Summaries[0]
	fmt.Fprintf(w, "%s %s (%s), window %s\n\n", asnName(first.Asn), first.Name, first.Country, windowText(first.Window))
	tw := tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)
	for _, s := range r.Summaries {
		class := dataset.ClassName(s.PolicyClass)
		if color {
			class = classColor[s.PolicyClass] + class + colorReset
		}
		fmt.Fprintf(tw, "%s %s: %s agents, %s prefixes\n", dataset.FamilyName(s.Family), class, thousands(s.Agents), thousands(s.Prefixes))
		fmt.Fprintf(tw, "  PORT\tAGENTS\tPREFIXES\tRESULTS\tSHARES OF PREFIXES\n")
		for _, p := range s.Ports {
			shares := slices.Clone(p.Shares)
			slices.SortStableFunc(shares, func(a, b *pb.Share) int { return cmp.Compare(b.Share, a.Share) })
			var parts []string
			for _, sh := range shares {
				parts = append(parts, dataset.VerdictName(sh.Verdict)+" "+share{sh.Share, sh.WilsonLow, sh.WilsonHigh, true}.String())
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", p.Port, thousands(p.Agents), thousands(p.Prefixes), thousands(p.Results), strings.Join(parts, ", "))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "timeline, one letter per UTC day:")
	for _, f := range families(r.Summaries) {
		writeTimeline(w, dataset.FamilyName(f), first.Window, timelines[f])
	}
	fmt.Fprintf(w, "  %s\n", timelineLegend)
	if len(r.Changes) > 0 {
		fmt.Fprintln(w, "\nchanges:")
		for _, c := range r.Changes {
			fmt.Fprintf(w, "  %s  %s  %s -> %s\n", day(c.ChangedAt.AsTime()), dataset.FamilyName(c.Family),
				dataset.ClassName(c.FromClass), dataset.ClassName(c.ToClass))
		}
	}
	switch {
	case len(r.EvidenceItems) > 0:
		fmt.Fprintln(w, "\nevidence (what intercepting middleboxes showed the probes):")
		for _, ev := range r.EvidenceItems {
			fmt.Fprintf(w, "  %s port %d %s, %s results, %s to %s:\n    %s\n", dataset.FamilyName(ev.Family), ev.Port,
				dataset.VerdictName(ev.Verdict), thousands(ev.Results), day(ev.FirstSeen.AsTime()), day(ev.LastSeen.AsTime()), ev.Text)
		}
	case len(r.Evidence) > 0:
		fmt.Fprintln(w, "\nevidence (what intercepting middleboxes showed the probes):")
		for _, ev := range r.Evidence {
			fmt.Fprintf(w, "  %s\n", ev)
		}
	}
	return nil
}

// writeTimeline writes one letter per day of window, a week per group and
// ten weeks per line, each line headed by its first day.
func writeTimeline(w io.Writer, label string, window *pb.TimeRange, points []*pb.TimelinePoint) {
	byDay := map[string]byte{}
	for _, p := range points {
		l, ok := classLetter[p.PolicyClass]
		if !ok {
			l = '?'
		}
		byDay[day(p.Day.AsTime())] = l
	}
	var start, end time.Time
	switch {
	case window != nil:
		start, end = dataset.Today(window.Start.AsTime()), window.End.AsTime()
	case len(points) > 0:
		start, end = dataset.Today(points[0].Day.AsTime()), points[len(points)-1].Day.AsTime().Add(dataset.Day)
	}
	writeDays(w, label, start, end, byDay)
}

// writeDays writes the letter of each day in [start, end) from byDay ('-'
// for a day it lacks), a week per group and ten weeks per line, each line
// headed by its first day.
func writeDays(w io.Writer, label string, start, end time.Time, byDay map[string]byte) {
	var line strings.Builder
	i := 0
	for d := start; d.Before(end); d, i = d.Add(dataset.Day), i+1 {
		switch {
		case i%70 == 0:
			if line.Len() > 0 {
				fmt.Fprintln(w, line.String())
				line.Reset()
			}
			line.WriteString("  " + label + "  " + day(d) + "  ")
			label = strings.Repeat(" ", len(label))
		case i%7 == 0:
			line.WriteByte(' ')
		}
		l, ok := byDay[day(d)]
		if !ok {
			l = '-'
		}
		line.WriteByte(l)
	}
	if line.Len() > 0 {
		fmt.Fprintln(w, line.String())
	}
}

var peersCommand = &command{
	name:    "peers",
	args:    "ASN [--family ipv4|ipv6] [--window 30d] [--format table|json]",
	summary: "how an ASN ranks among its country's networks, and its gaps",
	about: `Ranks an ASN among the networks of its country by the share of their prefixes
whose port 25 is blocked (rank 1 blocks the most), lists those networks, and
the gaps the operator can act on: IPv6 open while IPv4 is blocked, submission
ports blocked, interception. The subject is marked with *.`,
	examples: `  op25b peers AS64500
  op25b peers AS64500 --family ipv6`,
	nargs: 1,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addFamily(fs)
		q.addWindow(fs)
		q.addFormat(fs, "table", "json")
		return func(ctx context.Context, args []string) error {
			asn, err := parseASNArg(args[0])
			if err != nil {
				return err
			}
			query, err := q.query(e, "table", "json")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.GetPeers(ctx, asn, query)
			if err != nil {
				return err
			}
			if q.format == "json" {
				return writeJSON(e.stdout, r)
			}
			return writePeers(e.stdout, r, e.color)
		}
	},
}

func writePeers(w io.Writer, r *pb.GetPeersResponse, color bool) error {
	s := r.Subject
	fmt.Fprintf(w, "%s %s (%s, %s): rank %d of %d in %s by share of prefixes with port 25 blocked\nwindow %s\n\n",
		asnName(s.GetAsn()), s.GetName(), s.GetCountry(), dataset.FamilyName(s.GetFamily()), r.Rank, r.PeerCount, s.GetCountry(), windowText(s.GetWindow()))
	isSubject := func(a *pb.ASNSummary) bool { return a.Asn == s.GetAsn() && a.Family == s.GetFamily() }
	cols := append([]column{{header: " ", cell: func(a *pb.ASNSummary) string {
		if isSubject(a) {
			return "*"
		}
		return ""
	}}}, summaryColumns()...)
	if err := writeSummaries(w, cols, r.Peers, color); err != nil {
		return err
	}
	if len(r.Gaps) == 0 {
		_, err := fmt.Fprintln(w, "\nno gaps found")
		return err
	}
	fmt.Fprintln(w, "\ngaps:")
	tw := tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)
	for _, g := range r.Gaps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", dataset.FamilyName(g.Family), g.Kind, g.Detail)
	}
	return tw.Flush()
}

var changesCommand = &command{
	name:    "changes",
	args:    "[--country CC] [--asn ASN] [--window 30d] [--format table|csv|json]",
	summary: "changes of policy class, newest first",
	about: `Lists the days on which a network's policy class changed, such as "AS64500
IPv4 turned to OP25B on 2026-03-01": consecutive classified days (days with
too few prefixes skipped) whose classes differ.`,
	examples: `  op25b changes --country JP --window 90d
  op25b changes --asn AS64500 --format csv`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addCountry(fs)
		fs.StringVar(&q.asn, "asn", "", "one ASN, such as AS64500")
		q.addWindow(fs)
		q.addFormat(fs, "table", "csv", "json")
		return func(ctx context.Context, _ []string) error {
			query, err := q.query(e, "table", "csv", "json")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var rows []*pb.PolicyChange
			for ch, err := range c.AllPolicyChanges(ctx, query) {
				if err != nil {
					return err
				}
				rows = append(rows, ch)
			}
			switch q.format {
			case "json":
				return writeJSON(e.stdout, &pb.ListPolicyChangesResponse{Changes: rows})
			case "csv":
				cw := csv.NewWriter(e.stdout)
				cw.Write([]string{"changed_at", "asn", "country", "family", "from_class", "to_class"})
				for _, c := range rows {
					cw.Write([]string{c.ChangedAt.AsTime().UTC().Format(time.RFC3339), strconv.FormatUint(uint64(c.Asn), 10), c.Country,
						dataset.FamilyName(c.Family), dataset.ClassName(c.FromClass), dataset.ClassName(c.ToClass)})
				}
				cw.Flush()
				return cw.Error()
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(e.stdout, "no changes of class in this window")
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, padding, ' ', 0)
			fmt.Fprintln(tw, "DATE\tASN\tCC\tFAMILY\tFROM\tTO")
			for _, c := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", day(c.ChangedAt.AsTime()), asnName(c.Asn), c.Country,
					dataset.FamilyName(c.Family), dataset.ClassName(c.FromClass), dataset.ClassName(c.ToClass))
			}
			return tw.Flush()
		}
	},
}

var countriesCommand = &command{
	name:    "countries",
	args:    "[--family ipv4|ipv6] [--window 30d] [--format table|json]",
	summary: "per country: ASNs by class, and the share that block port 25",
	about: `Rolls the networks up per country and address family: how many ASNs were
measured, by how many agents, how many fall in each policy class, and the
share of classified ASNs that block port 25 (OP25B or ALL_SMTP_BLOCKED).`,
	examples: `  op25b countries
  op25b countries --family ipv6 --window 90d`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addFamily(fs)
		q.addWindow(fs)
		q.addFormat(fs, "table", "json")
		return func(ctx context.Context, _ []string) error {
			query, err := q.query(e, "table", "json")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.ListCountries(ctx, query)
			if err != nil {
				return err
			}
			if q.format == "json" {
				return writeJSON(e.stdout, r)
			}
			if len(r.Countries) == 0 {
				_, err := fmt.Fprintln(e.stdout, "no country measured in this window")
				return err
			}
			classes := dataset.ClassNames()
			tw := tabwriter.NewWriter(e.stdout, 0, 0, padding, ' ', 0)
			fmt.Fprintf(tw, "CC\tFAMILY\tASNS\tAGENTS\tBLOCKING 25\t%s\n", strings.Join(classes, "\t"))
			for _, c := range r.Countries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", c.Country, dataset.FamilyName(c.Family), thousands(c.Asns), thousands(c.Agents), percent(c.Op25BShare))
				for _, name := range classes {
					n, ok := c.Classes[name]
					if !ok {
						n = c.Classes["POLICY_CLASS_"+name]
					}
					fmt.Fprintf(tw, "\t%d", n)
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, "\nBLOCKING 25: share of the classified ASNs that block port 25 (OP25B or ALL_SMTP_BLOCKED).")
			return err
		}
	},
}

var infoCommand = &command{
	name:     "info",
	args:     "[--format text|json]",
	summary:  "the collector's software, dataset schema, licence, freshness and limits",
	about:    `Says which software and dataset schema serve the data, under which licence, when the rollups were last brought up to date, and the collector's limits.`,
	examples: `  op25b info --collector https://observatory.example`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addFormat(fs, "text", "json")
		return func(ctx context.Context, _ []string) error {
			if _, err := q.query(e, "text", "json"); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if q.format == "json" {
				return writeJSON(e.stdout, r)
			}
			var windows []string
			for _, d := range r.WindowDays {
				s := fmt.Sprintf("%dd", d)
				if d == r.DefaultWindowDays {
					s += " (default)"
				}
				windows = append(windows, s)
			}
			when := func(ts *timestamppb.Timestamp) string {
				if !ts.IsValid() || ts.AsTime().Unix() <= 0 {
					return "never"
				}
				t := ts.AsTime()
				return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), e.now().Sub(t).Round(time.Second))
			}
			refreshed := "daily points " + when(r.RefreshedAt) + ", windows " + when(r.WindowsRefreshedAt)
			readFrom := "the primary database"
			switch {
			case r.GetReadFromReplica() && r.GetReplicaLag() != nil:
				readFrom = fmt.Sprintf("a replica, %s behind", r.GetReplicaLag().AsDuration().Round(time.Millisecond))
			case r.GetReadFromReplica():
				readFrom = "a replica, lag unknown"
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, padding, ' ', 0)
			for _, kv := range [][2]string{
				{"collector", c.BaseURL()},
				{"software", r.SoftwareVersion},
				{"schema", r.SchemaVersion},
				{"licence", r.Licence},
				{"refreshed", refreshed},
				{"read from", readFrom},
				{"windows", strings.Join(windows, ", ")},
				{"max window", fmt.Sprintf("%d days", r.MaxWindowDays)},
				{"max export", fmt.Sprintf("%d days", r.MaxExportDays)},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			w := r.GetReferenceMtaWindow()
			if w == nil {
				return nil
			}
			fmt.Fprintf(e.stdout, "\nreference MTAs, %s to %s:\n", w.GetStart().AsTime().Format(time.DateOnly),
				w.GetEnd().AsTime().Add(-time.Second).Format(time.DateOnly))
			if len(r.GetReferenceMtas()) == 0 {
				fmt.Fprintln(e.stdout, "  (no results from enrolled reference MTAs)")
			}
			tw = tabwriter.NewWriter(e.stdout, 0, 0, padding, ' ', 0)
			for _, m := range r.GetReferenceMtas() {
				line := fmt.Sprintf("%d results, blocked %s (others %s), %d charged to it", m.GetResults(),
					groupShare(m.GetBlocked()), groupShare(m.GetOthersBlocked()), m.GetCharged())
				if m.GetFlagged() {
					line += ", FLAGGED: its blocked share departs from the others'"
				}
				fmt.Fprintf(tw, "  %s %s %d\t%s\n", m.GetRefmtaId(), dataset.FamilyName(m.GetFamily()), m.GetPort(), line)
			}
			return tw.Flush()
		}
	},
}

// groupShare is a share with its Wilson interval, in percent.
func groupShare(g *pb.GroupShare) string {
	return fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*g.GetShare(), 100*g.GetWilsonLow(), 100*g.GetWilsonHigh())
}
