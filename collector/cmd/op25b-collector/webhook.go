package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/webhook"
)

const webhookUsage = "usage: op25b-collector webhook add URL [--country CC] [--asn N] [--family ipv4|ipv6] | list | remove ID | enable ID"

// webhookCmd registers and manages the endpoints policy changes are
// delivered to (collector/webhook; docs/operator.md, Webhooks).
func webhookCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(webhookUsage)
	}
	sub, args := args[0], args[1:]
	var c common
	fs := flag.NewFlagSet("op25b-collector webhook "+sub, flag.ContinueOnError)
	c.register(fs)
	country := fs.String("country", "", "add: only changes of networks registered in this country (ISO 3166-1 alpha-2, such as JP)")
	asn := fs.String("asn", "", "add: only changes of this ASN (64500 or AS64500)")
	family := fs.String("family", "", "add: only changes over ipv4 or ipv6")
	// The URL or id may come before the flags, as in the usage line.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			// As common.parse: the flag package said what was wrong.
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			os.Exit(2)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if err := c.parse(fs, nil); err != nil {
		return err
	}
	var f webhook.Filter
	var err error
	if f.Country, err = dataset.ParseCountry(*country); err != nil {
		return fmt.Errorf("--country: %w", err)
	}
	if *asn != "" {
		if f.ASN, err = dataset.ParseASN(*asn); err != nil {
			return fmt.Errorf("--asn: %w", err)
		}
	}
	if f.Family, err = dataset.ParseFamily(*family); err != nil {
		return fmt.Errorf("--family: %w", err)
	}
	if sub != "add" && (*country != "" || *asn != "" || *family != "") {
		return fmt.Errorf("webhook %s: --country, --asn and --family are for webhook add", sub)
	}
	want := map[string]int{"add": 1, "list": 0, "remove": 1, "enable": 1}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("webhook: unknown subcommand %q (want add, list, remove or enable)", sub)
	}
	if len(pos) != n {
		return errors.New(webhookUsage)
	}
	var id int64
	if n == 1 && sub != "add" {
		if id, err = webhook.ParseID(pos[0]); err != nil {
			return err
		}
	} else if sub == "add" {
		// Refuse a bad URL before starting a database.
		if _, err := webhook.ParseURL(pos[0]); err != nil {
			return err
		}
	}
	ctx := context.Background()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	reg := &webhook.Registry{Pool: st.Pool}
	switch sub {
	case "add":
		id, secret, err := reg.Add(ctx, pos[0], f)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "added webhook %d for %s changes from now on; its signing secret is shown once:\n", id, f)
		fmt.Fprintln(stdout, secret)
	case "list":
		hooks, err := reg.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tURL\tFILTER\tLAST EVENT\tFAILURES\tSTATE")
		for _, h := range hooks {
			state := "enabled"
			switch {
			case !h.Enabled && h.Disabled != nil:
				state = fmt.Sprintf("disabled %s: %s", h.Disabled.UTC().Format(time.RFC3339), h.DisabledReason)
			case h.Failures > 0:
				state = "retrying at " + h.NextAttempt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", h.ID, h.URL, h.Filter, h.LastEventID, h.Failures, state)
		}
		return tw.Flush()
	case "remove":
		return reg.Remove(ctx, id)
	case "enable":
		return reg.Enable(ctx, id)
	}
	return nil
}

// webhookMetrics registers the deliverer's metrics on reg and returns
// what observes them (webhook.Options.Observe).
func webhookMetrics(reg prometheus.Registerer) func(string, time.Duration) {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "op25b_webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome: delivered (a 2xx answer) or failed (retried with backoff; too many in a row disable the webhook)."},
		[]string{"outcome"})
	for _, o := range webhook.Outcomes {
		attempts.WithLabelValues(o)
	}
	// From 10ms (the deliverer woken by the refresh) to hours (retries).
	delay := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "op25b_webhook_delivery_delay_seconds",
		Help:    "Time from a policy change event's seen_at to the 2xx answer of its delivery.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)})
	reg.MustRegister(attempts, delay)
	return func(outcome string, d time.Duration) {
		attempts.WithLabelValues(outcome).Inc()
		if outcome == webhook.Delivered {
			delay.Observe(d.Seconds())
		}
	}
}
