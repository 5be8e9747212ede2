package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/datasetclient"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

var watchCommand = &command{
	name:    "watch",
	args:    "[--asn N] [--country CC] [--port 25|587|465] [--verdict V,...] [--format table|json]",
	summary: "results and policy changes live, as the collectors store them",
	about: `Prints the collector's live stream until interrupted (Ctrl-C): each result as
it is stored (prefix, ASN, family, port, verdict, failure, reference MTA; never
an address) and each policy change as the refresh logs it. --port and
--verdict select results only; --asn and --country select both. When the
connection breaks or the collector drops a client that reads too slowly,
watch reconnects and resumes after the last event it printed; a "gap" line
says when events were missed. --format json prints one JSON object per line:
the op25b.v1.StreamResponse messages.`,
	examples: `  op25b watch --asn AS64500
  op25b watch --country JP --port 25 --verdict BLOCKED_TIMEOUT,BLOCKED_RESET
  op25b watch --format json | jq .result.prefix`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
		var q queryFlags
		q.addCountry(fs)
		fs.StringVar(&q.asn, "asn", "", "only this ASN (64500 or AS64500)")
		port := fs.Uint("port", 0, "only results on this port: 25, 587 or 465")
		verdicts := fs.String("verdict", "", "only results with one of these verdicts, comma-separated (OPEN, BLOCKED_TIMEOUT, ...)")
		q.addFormat(fs, "table", "json")
		return func(ctx context.Context, _ []string) error {
			query, err := q.query(e, "table", "json")
			if err != nil {
				return err
			}
			req := datasetclient.StreamRequest{ASN: query.ASN, Country: query.Country}
			switch *port {
			case 0, 25, 465, 587:
				req.Port = uint32(*port)
			default:
				return usageErrorf("--port %d: want 25, 587 or 465", *port)
			}
			if *verdicts != "" {
				for _, name := range strings.Split(*verdicts, ",") {
					v, err := dataset.ParseVerdict(name)
					if err != nil {
						return flagError("verdict", err)
					}
					req.Verdicts = append(req.Verdicts, v)
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			print := printEvent
			if q.format == "json" {
				print = printEventJSON
			}
			return watch(ctx, c, req, e.stderr, func(ev *pb.StreamResponse) error { return print(e.stdout, ev) })
		}
	},
}

// watch streams until ctx ends, reconnecting after the last event seen
// with a backoff from 1 s to 30 s. An answer that retrying will not change
// (400, 404) ends it with the collector's error.
func watch(ctx context.Context, c *datasetclient.Client, req datasetclient.StreamRequest, stderr io.Writer, each func(*pb.StreamResponse) error) error {
	wait := time.Second
	for {
		err := c.Stream(ctx, req, func(ev *pb.StreamResponse) error {
			if ev.Id != "" {
				req.LastEventID = ev.Id
			}
			wait = time.Second
			return each(ev)
		})
		if ctx.Err() != nil {
			return nil
		}
		var apiErr *datasetclient.APIError
		if errors.As(err, &apiErr) && apiErr.HTTPStatus != http.StatusServiceUnavailable && apiErr.HTTPStatus != http.StatusTooManyRequests {
			return err
		}
		fmt.Fprintf(stderr, "op25b watch: %v; reconnecting in %v\n", err, wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// printEvent writes one event as a line of text.
func printEvent(w io.Writer, ev *pb.StreamResponse) error {
	var err error
	switch e := ev.Event.(type) {
	case *pb.StreamResponse_Result:
		r := e.Result
		_, err = fmt.Fprintf(w, "%-20s  %-9s %-2s  %-18s %-4s %3d  %-19s %-20s %s\n",
			r.GetMeasuredAt().AsTime().Format(time.RFC3339), asnText(r.Asn), orDash(r.Country), orDash(r.Prefix),
			dataset.FamilyName(r.Family), r.Port, dataset.VerdictName(r.Verdict), orDash(r.Failure), r.RefmtaId)
	case *pb.StreamResponse_Change:
		ch := e.Change
		what := "policy"
		if ch.Retracted {
			what = "retracted"
		}
		_, err = fmt.Fprintf(w, "%-20s  %-9s %-2s  %s %s %s → %s\n",
			ch.GetChangedAt().AsTime().Format(time.DateOnly), asnText(ch.Asn), orDash(ch.Country), dataset.FamilyName(ch.Family),
			what, className(ch.FromClass), className(ch.ToClass))
	case *pb.StreamResponse_Gap:
		missed := "some"
		if e.Gap.Missed > 0 {
			missed = strconv.FormatUint(e.Gap.Missed, 10)
		}
		_, err = fmt.Fprintf(w, "-- gap: %s events missed: %s\n", missed, e.Gap.Reason)
	}
	return err
}

// printEventJSON writes one event as a line of JSON.
func printEventJSON(w io.Writer, ev *pb.StreamResponse) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func asnText(asn uint32) string {
	if asn == 0 {
		return "-"
	}
	return "AS" + strconv.FormatUint(uint64(asn), 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func className(c pb.PolicyClass) string { return strings.TrimPrefix(c.String(), "POLICY_CLASS_") }
