package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

var prefixesCommand = &command{
	name:    "prefixes",
	args:    "ASN [--family ipv4|ipv6] [--window 30d] [--format table|csv|json]",
	summary: "one ASN's /24 and /48 prefixes: which still let port 25 out, day by day",
	about: `Lists the /24 (IPv4) and /48 (IPv6) prefixes of one network with results in
the window, for an operator rolling OP25B out pool by pool: each prefix's
verdict on ports 25, 587 and 465 (the majority of its agents' verdicts, as the
shares count it; "1/2" when only one of its two agents agrees), its agents,
the last day it was seen, and its port 25 verdict day by day as a row of
letters. Prefixes only: no address is published. --format json has every
port's verdict per day; csv one row per prefix.`,
	examples: `  op25b prefixes AS64500
  op25b prefixes 64500 --family ipv4 --window 90d
  op25b prefixes AS64500 --format csv > pools.csv`,
	nargs: 1,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addFamily(fs)
		q.addWindow(fs)
		q.addFormat(fs, "table", "csv", "json")
		return func(ctx context.Context, args []string) error {
			asn, err := parseASNArg(args[0])
			if err != nil {
				return err
			}
			query, err := q.query(e, "table", "csv", "json")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			all := &pb.GetPrefixesResponse{}
			for {
				r, err := c.GetPrefixes(ctx, asn, query)
				if err != nil {
					return err
				}
				all.Prefixes, all.Window = append(all.Prefixes, r.Prefixes...), r.Window
				if r.NextPageToken == "" {
					break
				}
				query.PageToken = r.NextPageToken
			}
			switch q.format {
			case "json":
				return writeJSON(e.stdout, all)
			case "csv":
				return writePrefixesCSV(e.stdout, all.Prefixes)
			}
			return writePrefixes(e.stdout, asn, all)
		}
	},
}

// Letters of a prefix's days.
var verdictLetter = map[pb.Verdict]byte{
	pb.Verdict_VERDICT_OPEN:                'P',
	pb.Verdict_VERDICT_BLOCKED_TIMEOUT:     'B',
	pb.Verdict_VERDICT_BLOCKED_RESET:       'B',
	pb.Verdict_VERDICT_BLOCKED_UNREACHABLE: 'B',
	pb.Verdict_VERDICT_INTERCEPTED:         'I',
	pb.Verdict_VERDICT_TAMPERED:            'T',
}

const prefixLegend = "P OPEN  B BLOCKED_*  I INTERCEPTED  T TAMPERED  - no conclusive result"

func prefixPort(p *pb.PrefixSummary, port uint32) *pb.PrefixPort {
	for _, pp := range p.Ports {
		if pp.Port == port {
			return pp
		}
	}
	return nil
}

// verdictCell writes a port's verdict, with how many of the prefix's
// conclusive agents had it when not all did; "-" for none.
func verdictCell(pp *pb.PrefixPort) string {
	if pp.GetVerdict() == pb.Verdict_VERDICT_UNSPECIFIED {
		return "-"
	}
	var agreed, all uint64
	for _, av := range pp.AgentVerdicts {
		all += av.Agents
		if av.Verdict == pp.Verdict {
			agreed = av.Agents
		}
	}
	s := dataset.VerdictName(pp.Verdict)
	if agreed != all {
		s += fmt.Sprintf(" %d/%d", agreed, all)
	}
	return s
}

func writePrefixes(w io.Writer, asn uint32, r *pb.GetPrefixesResponse) error {
	if len(r.Prefixes) == 0 {
		_, err := fmt.Fprintf(w, "no prefix of %s has results in %s\n", asnName(asn), windowText(r.Window))
		return err
	}
	fmt.Fprintf(w, "%s, window %s: %d prefixes\n\n", asnName(asn), windowText(r.Window), len(r.Prefixes))
	tw := tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)
	fmt.Fprintf(tw, "PREFIX\tAGENTS\tPORT 25\tPORT 587\tPORT 465\tRESULTS\tLAST SEEN\n")
	width := 0
	for _, p := range r.Prefixes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Prefix, thousands(p.Agents), verdictCell(prefixPort(p, 25)),
			verdictCell(prefixPort(p, 587)), verdictCell(prefixPort(p, 465)), thousands(p.Results), day(p.LastSeen.AsTime()))
		width = max(width, len(p.Prefix))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nport 25, one letter per UTC day:")
	for _, p := range r.Prefixes {
		byDay := map[string]byte{}
		for _, d := range p.Days {
			for _, pv := range d.Ports {
				if l, ok := verdictLetter[pv.Verdict]; ok && pv.Port == 25 {
					byDay[day(d.Day.AsTime())] = l
				}
			}
		}
		label := fmt.Sprintf("%-*s", width, p.Prefix)
		writeDays(w, label, dataset.Today(r.Window.Start.AsTime()), r.Window.End.AsTime(), byDay)
	}
	_, err := fmt.Fprintf(w, "  %s\n", prefixLegend)
	return err
}

func writePrefixesCSV(w io.Writer, prefixes []*pb.PrefixSummary) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"family", "prefix", "agents", "results", "first_seen", "last_seen",
		"port25_verdict", "port25_agents", "port587_verdict", "port587_agents", "port465_verdict", "port465_agents"})
	for _, p := range prefixes {
		rec := []string{dataset.FamilyName(p.Family), p.Prefix, strconv.FormatUint(p.Agents, 10), strconv.FormatUint(p.Results, 10),
			day(p.FirstSeen.AsTime()), day(p.LastSeen.AsTime())}
		for _, port := range []uint32{25, 587, 465} {
			pp := prefixPort(p, port)
			var agents uint64
			for _, av := range pp.GetAgentVerdicts() {
				agents += av.Agents
			}
			v := ""
			if pp.GetVerdict() != pb.Verdict_VERDICT_UNSPECIFIED {
				v = dataset.VerdictName(pp.GetVerdict())
			}
			rec = append(rec, v, strconv.FormatUint(agents, 10))
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}
