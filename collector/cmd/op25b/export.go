package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
)

var exportCommand = &command{
	name:    "export",
	args:    "--start DAY --end DAY [--asn ASN] [--country CC] [--family ipv4|ipv6] [--format csv|ndjson|parquet] [--quiet] -o FILE",
	summary: "download public raw results as CSV, NDJSON or Parquet",
	about: `Downloads the public raw results measured from --start to --end (UTC days or
RFC 3339 times, the end excluded; at most the collector's max export days,
see op25b info), one row per result: result_id, measured_at, asn, country,
prefix (the /24 or /48, never a full address), family, port, verdict,
failure, refmta_id, agent_id (a pseudonymous key hash), refmta_charged
(true when the verdict differed between reference MTAs in the same round
and was charged to the reference MTA's side, out of the network's shares),
one_off (true for a round contributed once with op25b-agent check --submit;
agent_id is then empty) and submission_id (that contribution's id).
The data is licensed CC-BY-4.0.

The file is written as FILE.partial and renamed to FILE when the collector
has sent all of it. If the transfer breaks off or is interrupted,
FILE.partial is removed and op25b exits 1: a FILE that exists is complete.
-o - writes to stdout.

Progress goes to stderr: a bar on a terminal (the share of the time range
done, rows, bytes, rate, time), else a line at most once a second.`,
	examples: `  op25b export --start 2026-03-01 --end 2026-03-08 -o week.csv
  op25b export --start 2026-03-01 --end 2026-04-01 --country JP --format parquet -o jp-march.parquet
  op25b export --start 2026-03-01 --end 2026-03-02 --asn AS64500 --format ndjson -o - | jq -r .verdict | sort | uniq -c`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		startFlag := fs.String("start", "", "first UTC day (2026-03-01) or time (RFC 3339) to export; required")
		endFlag := fs.String("end", "", "UTC day or time where the export stops, excluded; required")
		fs.StringVar(&q.asn, "asn", "", "only this ASN, such as AS64500")
		q.addCountry(fs)
		q.addFamily(fs)
		q.addFormat(fs, datasetclient.CSV, datasetclient.NDJSON, datasetclient.Parquet)
		out := fs.String("o", "", "file to write; - for stdout; required")
		quiet := fs.Bool("quiet", false, "print no progress and no summary")
		return func(ctx context.Context, _ []string) error {
			var start, end time.Time
			for _, t := range []struct {
				name string
				flag string
				dst  *time.Time
			}{{"start", *startFlag, &start}, {"end", *endFlag, &end}} {
				if t.flag == "" {
					return usageErrorf("--%s is required", t.name)
				}
				v, err := dataset.ParseTime(t.flag)
				if err != nil {
					return flagError(t.name, err)
				}
				*t.dst = v
			}
			if !end.After(start) {
				return usageErrorf("--end %s must come after --start %s", *endFlag, *startFlag)
			}
			query, err := q.query(e, datasetclient.CSV, datasetclient.NDJSON, datasetclient.Parquet)
			if err != nil {
				return err
			}
			if *out == "" {
				return usageErrorf("-o FILE is required (-o - writes to stdout)")
			}
			if *out == "-" && q.format == datasetclient.Parquet && isTerminal(e.stdout) {
				return usageErrorf("Parquet is binary: give -o FILE rather than write it to a terminal")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			req := datasetclient.ExportRequest{Start: start, End: end, ASN: query.ASN, Country: query.Country,
				Family: query.Family, Format: q.format}
			return export(ctx, e, c, req, *out, *quiet)
		}
	},
}

// export writes the export to out through out.partial, renamed once
// complete, or to stdout for "-".
func export(ctx context.Context, e *env, c *datasetclient.Client, req datasetclient.ExportRequest, out string, quiet bool) error {
	var f *os.File
	dst, partial, name := e.stdout, out+".partial", out
	if out == "-" {
		name = "stdout"
	} else {
		var err error
		if f, err = os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return err
		}
		dst = f
	}
	bw := bufio.NewWriterSize(dst, 256<<10)
	pp := newProgressPrinter(e.stderr, e.stderrTTY, req.Format != datasetclient.Parquet, quiet, e.now)
	p, err := c.Export(ctx, req, bw, pp.update)
	if err == nil {
		err = bw.Flush()
	}
	if f != nil {
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(partial, out)
		}
		if err != nil {
			os.Remove(partial)
		}
	}
	pp.clear()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		if p.Bytes == 0 {
			return err
		}
		if f == nil {
			return fmt.Errorf("%w (%s received): the output is incomplete", err, pp.amount(p, false))
		}
		return fmt.Errorf("%w (%s received); removed %s", err, pp.amount(p, false), partial)
	}
	if !quiet {
		fmt.Fprintf(e.stderr, "exported %s in %s to %s\n", pp.amount(p, false), elapsed(e.now().Sub(pp.started)), name)
	}
	return nil
}

// progressPrinter shows an export's progress on stderr: a bar redrawn at
// most ten times a second on a terminal, else a line at most once a
// second.
type progressPrinter struct {
	w                io.Writer
	tty, rows, quiet bool
	now              func() time.Time
	started, printed time.Time
	drawn            bool // a bar is on the terminal's last line
}

func newProgressPrinter(w io.Writer, tty, rows, quiet bool, now func() time.Time) *progressPrinter {
	pp := &progressPrinter{w: w, tty: tty, rows: rows, quiet: quiet, now: now, started: now()}
	if !tty {
		pp.printed = pp.started // no line for an export done within a second
	}
	return pp
}

func (pp *progressPrinter) update(p datasetclient.Progress) {
	if pp.quiet {
		return
	}
	now := pp.now()
	every := time.Second
	if pp.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(pp.printed) < every {
		return
	}
	pp.printed = now
	if !pp.tty {
		fmt.Fprintf(pp.w, "exported %s\n", pp.amount(p, true))
		return
	}
	fmt.Fprintf(pp.w, "\r\x1b[K%s", pp.bar(p, now))
	pp.drawn = true
}

// clear removes the bar from the terminal.
func (pp *progressPrinter) clear() {
	if pp.drawn {
		fmt.Fprint(pp.w, "\r\x1b[K")
		pp.drawn = false
	}
}

// amount writes "120,000 rows, 14.2 MB", with ", 41%" if asked and known.
func (pp *progressPrinter) amount(p datasetclient.Progress, pct bool) string {
	s := byteSize(p.Bytes)
	if pp.rows {
		s = thousands(p.Rows) + " rows, " + s
	}
	if pct && p.Fraction >= 0 {
		s += ", " + percent(p.Fraction)
	}
	return s
}

const barWidth = 24

// bar writes "[#########---------------]  41%  up to 2026-03-04  120,000
// rows  14.2 MB  1.3 MB/s  0:12".
func (pp *progressPrinter) bar(p datasetclient.Progress, now time.Time) string {
	var parts []string
	if p.Fraction >= 0 {
		n := int(p.Fraction * barWidth)
		parts = append(parts, "["+strings.Repeat("#", n)+strings.Repeat("-", barWidth-n)+"]", fmt.Sprintf("%3.0f%%", p.Fraction*100))
	}
	if pp.rows {
		if !p.LastMeasuredAt.IsZero() {
			parts = append(parts, "up to "+day(p.LastMeasuredAt))
		}
		parts = append(parts, thousands(p.Rows)+" rows")
	}
	parts = append(parts, byteSize(p.Bytes))
	if d := now.Sub(pp.started); d >= time.Second {
		parts = append(parts, byteSize(int64(math.Round(float64(p.Bytes)/d.Seconds())))+"/s")
	}
	parts = append(parts, clock(now.Sub(pp.started)))
	return strings.Join(parts, "  ")
}

// clock writes a duration as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int(d.Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func elapsed(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
