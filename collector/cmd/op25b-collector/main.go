// Command op25b-collector is the OP25B Observatory collector: agents and
// reference MTAs enroll with it, fetch their schedule and upload results
// and sightings over gRPC (TLS); it stores them in PostgreSQL, attributed
// to ASNs.
//
//	op25b-collector [serve] [flags]                          run the collector
//	op25b-collector token create --label L [--kind agent|refmta] [--expires 720h] [--uses N]
//	op25b-collector token list | token revoke ID
//	op25b-collector principal revoke ID                      refuse an agent or refmta from its next call
//	op25b-collector summary [--since 24h]                    verdicts per ASN, family and port; results agents lost
//	op25b-collector rebuild                                  recompute the published rollups from raw results
//	op25b-collector webhook add URL [--country CC] [--asn N] [--family ipv4|ipv6]
//	op25b-collector webhook list | webhook remove ID | webhook enable ID
//	op25b-collector archive --dir DIR [--from D] [--to D] [--retain-raw-days N]
//	                                                         write each finished UTC day as Parquet; retire archived raw results
//
// With no --database-url (or DATABASE_URL) it runs a private PostgreSQL
// cluster under --data-dir from the locally installed server binaries.
// With --read-database-url, serve reads the dataset from a streaming
// replica of the database, and writes only to the database.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/asn"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/httpapi"
	"github.com/op25b/observatory/collector/ingest"
	"github.com/op25b/observatory/collector/localca"
	"github.com/op25b/observatory/collector/pgcluster"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/stream"
	"github.com/op25b/observatory/collector/submit"
	"github.com/op25b/observatory/collector/web"
	"github.com/op25b/observatory/collector/webhook"
	"github.com/op25b/observatory/internal/flagenv"
	"github.com/op25b/observatory/internal/ratelimit"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

var version = "dev"

// common are the flags every subcommand needs to reach the database.
type common struct {
	dataDir     string
	databaseURL string
	logLevel    string
	log         *slog.Logger
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "/var/lib/op25b-collector", "directory for the embedded PostgreSQL cluster and the local CA")
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL (also DATABASE_URL); empty: run an embedded cluster under --data-dir")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := flagenv.Apply(fs, "OP25B"); err != nil {
		return err
	}
	if c.databaseURL == "" {
		c.databaseURL = os.Getenv("DATABASE_URL")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return nil
}

// rollupFlags are the dataset's evidence thresholds and windows.
type rollupFlags struct {
	minPrefixes   int
	dominant      float64
	windows       flagenv.List
	defWindow     int
	refmtaWindow  int
	refmtaResults int
	refmtaGap     float64
}

func (r *rollupFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&r.minPrefixes, "class-min-prefixes", 3, "distinct /24 or /48 prefixes a port needs before it can decide an ASN's policy class")
	fs.Float64Var(&r.dominant, "class-dominant", 0.8, "share of prefixes one verdict group (open, blocked, intercepted) needs to characterise a port")
	fs.Var(&r.windows, "windows", "rolling windows kept precomputed, in days (default 7,30,90)")
	fs.IntVar(&r.defWindow, "default-window", 30, "window in days of queries that name none; one of --windows")
	fs.IntVar(&r.refmtaWindow, "refmta-window", 7, "days of the per-reference-MTA figures and flags, ending today")
	fs.IntVar(&r.refmtaResults, "refmta-min-results", 30, "conclusive results a reference MTA, and the others pooled, need per family and port before it can be flagged")
	fs.Float64Var(&r.refmtaGap, "refmta-min-gap", 0.2, "how far above the other reference MTAs' blocked share a reference MTA's must be to be flagged (besides Wilson intervals apart)")
}

func (r *rollupFlags) open(st *store.Store) (*dataset.Dataset, error) {
	cfg := dataset.Config{MinPrefixes: r.minPrefixes, Dominant: r.dominant, DefaultWindow: r.defWindow, SoftwareVersion: version,
		RefMTAWindow: r.refmtaWindow, RefMTAMinResults: r.refmtaResults, RefMTAMinGap: r.refmtaGap}
	for _, w := range r.windows {
		n, err := strconv.Atoi(strings.TrimSuffix(w, "d"))
		if err != nil {
			return nil, fmt.Errorf("--windows: %q is not a number of days", w)
		}
		cfg.Windows = append(cfg.Windows, n)
	}
	now, err := testOnlyClock()
	if err != nil {
		return nil, err
	}
	return dataset.New(st.Pool, cfg, now)
}

// testOnlyClockVariable shifts the rollups' clock by a Go duration, so
// that the chaos run (deploy/chaos) can take a collector through a UTC
// midnight. Test-only: never set it in production.
const testOnlyClockVariable = "OP25B_TEST_ONLY_CLOCK_OFFSET"

// testOnlyClock is the rollups' clock: nil (time.Now) unless
// testOnlyClockVariable is set.
func testOnlyClock() (func() time.Time, error) {
	v := os.Getenv(testOnlyClockVariable)
	if v == "" {
		return nil, nil
	}
	off, err := time.ParseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", testOnlyClockVariable, err)
	}
	return func() time.Time { return time.Now().Add(off) }, nil
}

// openStore connects to the database, starting the embedded cluster when
// no URL is given. stop releases what it started.
func (c *common) openStore(ctx context.Context) (st *store.Store, stop func(), err error) {
	url := c.databaseURL
	var cluster *pgcluster.Cluster
	if url == "" {
		dir := filepath.Join(c.dataDir, "postgres")
		c.log.Info("no DATABASE_URL: starting the embedded PostgreSQL cluster", "dir", dir)
		if cluster, err = pgcluster.Start(ctx, dir, pgcluster.Options{}); err != nil {
			return nil, nil, err
		}
		if cluster.Adopted {
			c.log.Warn("the embedded PostgreSQL cluster was left running by a collector that did not stop it (killed?); this process takes it over and stops it when done",
				"dir", dir)
		}
		url = cluster.URL()
	}
	st, err = store.Open(ctx, url, c.log)
	if err != nil {
		if cluster != nil {
			cluster.Stop()
		}
		return nil, nil, err
	}
	stopSupervising := func() {}
	if cluster != nil {
		stopSupervising = c.supervise(cluster)
	}
	return st, func() {
		stopSupervising()
		st.Close()
		if cluster != nil {
			if err := cluster.Stop(); err != nil {
				c.log.Error("stopping the embedded cluster", "err", err)
			}
		}
	}, nil
}

// superviseEvery is how often the collector looks whether its embedded
// PostgreSQL server died.
const superviseEvery = time.Second

// supervise restarts the embedded cluster's server whenever it dies (see
// pgcluster.Cluster.Supervise), until the returned function is called.
func (c *common) supervise(cluster *pgcluster.Cluster) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cluster.Supervise(ctx, superviseEvery, func(err error) {
			if err != nil {
				c.log.Error("the embedded PostgreSQL server died and could not be started again; retrying", "err", err)
				return
			}
			c.log.Warn("the embedded PostgreSQL server died (killed?) and was started again; it recovered what was committed",
				"dir", cluster.Dir)
		})
	}()
	return func() { cancel(); <-done }
}

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "token":
		err = token(args)
	case "principal":
		err = principal(args)
	case "summary":
		err = summary(args, os.Stdout)
	case "rebuild":
		err = rebuild(args, os.Stdout)
	case "webhook":
		err = webhookCmd(args, os.Stdout, os.Stderr)
	case "archive":
		err = archiveDays(args, os.Stdout)
	case "version":
		fmt.Println("op25b-collector", version)
	default:
		fmt.Fprintf(os.Stderr, "op25b-collector: unknown command %q (want serve, token, principal, summary, rebuild, webhook, archive or version)\n", cmd)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "op25b-collector:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	var c common
	var refmtas, tlsHosts, asnFiles flagenv.List
	fs := flag.NewFlagSet("op25b-collector serve", flag.ContinueOnError)
	c.register(fs)
	listen := fs.String("listen", ":8443", "gRPC (TLS) address for agents and reference MTAs")
	httpListen := fs.String("http-listen", "127.0.0.1:9090", "HTTP address of the web page (/), the dataset API (/api/v1), /metrics and /healthz")
	downloadDir := fs.String("download-dir", "", "directory of the agent's release files (make release's out/release): served under /download/ and offered on the check page; empty: the page tells how to build the agent")
	publicURL := fs.String("public-url", "", "the web address volunteers reach this collector at (https://observatory.example), which the check page tells them to submit to and webhook deliveries link to; empty: the address of each request (webhooks: a path)")
	submitRate := fs.Float64("submit-rate", 6, "one-off contributions (op25b-agent check --submit) per hour from one address (IPv6: per /64); 0: take none")
	submitBurst := fs.Int("submit-burst", 3, "burst of one-off contributions from one address")
	submitPrefixRate := fs.Float64("submit-prefix-rate", 30, "one-off contributions per hour from one /24 or /48")
	submitPrefixBurst := fs.Int("submit-prefix-burst", 10, "burst of one-off contributions from one /24 or /48")
	httpRate := fs.Float64("http-rate", 10, "HTTP requests per second per client address (IPv6: per /64), on every route")
	httpBurst := fs.Int("http-burst", 40, "burst of HTTP requests per client address")
	trustProxy := fs.Bool("trust-proxy", false, "take the client address from X-Forwarded-For (only behind a reverse proxy you run); turns --http-max-conns-per-addr off")
	httpConns := fs.Int("http-max-conns", 1024, "HTTP connections open at once; at most a quarter of the open-file limit")
	httpConnsPerAddr := fs.Int("http-max-conns-per-addr", 64, "HTTP connections open at once from one client address (IPv6: per /64); 0: no cap")
	grpcConns := fs.Int("grpc-max-conns", 0, "gRPC connections open at once; 0: the open-file limit less the HTTP connections and a reserve of 256")
	grpcConnsPerAddr := fs.Int("grpc-max-conns-per-addr", 4096, "gRPC connections open at once from one address (IPv6: per /64), as behind a carrier-grade NAT; 0: no cap")
	tlsCert := fs.String("tls-cert", "", "server certificate (PEM); empty: a local CA under --data-dir/tls signs one")
	tlsKey := fs.String("tls-key", "", "server key (PEM), with --tls-cert")
	fs.Var(&tlsHosts, "tls-hosts", "names and addresses the local CA's certificate covers (default localhost,127.0.0.1,::1)")
	fs.Var(&refmtas, "refmta", "identity document of a reference MTA agents probe (repeatable; reloaded on SIGHUP)")
	fs.Var(&asnFiles, "asn", "prefix-to-ASN file: RouteViews pfx2as (v4 and v6 files), iptoasn ip2asn TSV or an ASN mmdb; .gz allowed (repeatable; reloaded on change and SIGHUP)")
	asnFormat := fs.String("asn-format", "auto", "format of the --asn files: auto, pfx2as, ip2asn or mmdb")
	interval := fs.Duration("interval", 15*time.Minute, "time between an agent's rounds")
	jitter := fs.Duration("jitter", 5*time.Minute, "window over which agents spread their start times")
	probeTimeout := fs.Duration("probe-timeout", 10*time.Second, "agents' connect timeout and the least deadline of a probe attempt (docs/methodology.md, Deadlines)")
	rate := fs.Float64("rate", 2, "calls and upload batches per second per agent or reference MTA")
	burst := fs.Int("burst", 60, "burst of calls and batches per principal")
	maxMsg := fs.Int("max-msg-size", 4<<20, "largest gRPC message accepted, bytes")
	refreshEvery := fs.Duration("refresh-every", time.Minute, "how often the published daily points (timelines) take in new results")
	windowsEvery := fs.Duration("windows-every", 15*time.Minute, "how often the published rolling windows (the ASN table) take in new results; they also move on at the first refresh after UTC midnight")
	webhookFailures := fs.Int("webhook-max-failures", 10, "consecutive failed deliveries that disable a webhook (retried with backoff from 30s to 1h before that)")
	readURL := fs.String("read-database-url", "", "PostgreSQL URL of a streaming replica of the database: the dataset API, the web page and the gRPC DatasetService read from it; empty: from the database")
	archiveDir := fs.String("archive-dir", "", "directory of the daily archives: each finished UTC day of public results written there as Parquet every hour, by one collector of those sharing the database at a time, and served under /archive/; empty: none")
	retainRaw := fs.Int("retain-raw-days", 0, "with --archive-dir, drop the raw results of days older than this many days once the archive holds them (the rollups stay); more than the 30 days ingest accepts results for; 0: keep all")
	streamOn := fs.Bool("stream", true, "serve the live stream of results and policy changes (/api/v1/stream, DatasetService/Stream): ingest then announces the results it stores to every collector sharing the database (docs/operator.md, Live stream)")
	streamSubs := fs.Int("stream-max-subscribers", 1000, "live stream subscribers (SSE and gRPC) held at once; more are answered 503 / UNAVAILABLE")
	var rollups rollupFlags
	rollups.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := checkRetention(*retainRaw); err != nil {
		return err
	}
	if *retainRaw != 0 && *archiveDir == "" {
		return errors.New("--retain-raw-days needs --archive-dir: only archived days are retired")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if v := os.Getenv(testOnlyClockVariable); v != "" {
		c.log.Warn("test-only clock offset in force: the rollups' clock is shifted", "variable", testOnlyClockVariable, "offset", v)
	}

	sched := &scheduleSource{files: refmtas, interval: *interval, jitter: *jitter, timeout: *probeTimeout}
	if err := sched.reload(); err != nil {
		return err
	}
	var cert tls.Certificate
	var err error
	caFile := ""
	if *tlsCert != "" {
		if cert, err = tls.LoadX509KeyPair(*tlsCert, *tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	} else {
		if len(tlsHosts) == 0 {
			tlsHosts = flagenv.List{"localhost", "127.0.0.1", "::1"}
		}
		if cert, err = localca.Ensure(filepath.Join(c.dataDir, "tls"), tlsHosts, time.Now()); err != nil {
			return err
		}
		caFile = filepath.Join(c.dataDir, "tls", localca.CACert)
	}

	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	as := &auth.Service{Pool: st.Pool, Now: time.Now}
	limit := ratelimit.New[string](*rate, *burst, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := &api.Guard{Auth: as, Limit: limit, UnaryTimeout: 30 * time.Second}
	grpcSrv, health := api.NewGRPCServer(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, g,
		api.Options{MaxRecvMsgSize: *maxMsg})
	snapshots := &ingest.Snapshots{}
	var asnSrc *asn.Source
	if len(asnFiles) > 0 {
		format, err := asn.ParseFormat(*asnFormat)
		if err != nil {
			return err
		}
		if asnSrc, err = asn.NewSource(c.log, format, asnFiles...); err != nil {
			return err
		}
		// The first table is in force before the first result arrives.
		last, err := putInForce(ctx, asnSrc.Current(), nil, st, snapshots, c.log)
		if err != nil {
			return err
		}
		go followASN(ctx, asnSrc, last, st, snapshots, c.log)
	} else {
		c.log.Warn("no --asn file: results are stored without an ASN")
	}
	srv := &api.Server{Auth: as, Store: st, Limit: limit, Log: c.log, Metrics: api.NewMetrics(reg),
		Converter: &ingest.Converter{ASN: snapshots, Limits: ingest.DefaultLimits, Now: time.Now},
		Keys:      &api.KeyCache{Lookup: as.RefMTAKeys, TTL: time.Minute},
		Schedule:  sched.current, Spread: &api.Spreader{}}
	srv.Register(grpcSrv)
	ds, err := rollups.open(st)
	if err != nil {
		return err
	}
	// The deliverer reads the events where the refresh logs them.
	deliverer := webhook.NewDeliverer(st.Pool, ds, webhook.Options{MaxFailures: *webhookFailures, PublicURL: *publicURL,
		Logger: c.log, Observe: webhookMetrics(reg)})
	// The archives read the database, not a replica that may lag.
	primary := ds
	if *readURL != "" {
		// Refreshes still write to the database; ds reads from the replica.
		var closeReplica func()
		if ds, closeReplica, err = readReplica(ctx, *readURL, ds, reg, c.log); err != nil {
			return err
		}
		defer closeReplica()
	}
	dsSrv := &dataset.Server{D: ds, Log: c.log}
	var broker *stream.Broker
	if *streamOn {
		// Every collector announces what it stores, whether or not it
		// has subscribers: a subscriber of another one may want it.
		st.NotifyResults(true)
		broker = stream.NewBroker(stream.Options{MaxSubscribers: *streamSubs, Metrics: stream.NewMetrics(reg)})
		// Changes are read from the database: a replica may not have
		// replayed the event it was notified of yet.
		go stream.NewFollower(st, primary, broker, c.log).Run(ctx)
		dsSrv.Streamer = broker
	}
	op25bv1.RegisterDatasetServiceServer(grpcSrv, dsSrv)
	maxHTTP, maxGRPC, err := connCaps(*httpConns, *grpcConns, c.log)
	if err != nil {
		return err
	}
	if *trustProxy {
		// Every connection comes from the proxy: it must cap them per client.
		*httpConnsPerAddr = 0
	}
	rm := api.NewRefreshMetrics(reg)
	go ds.Run(ctx, *refreshEvery, *windowsEvery, c.log, func(st dataset.RefreshStats, err error) {
		switch {
		case err != nil:
			rm.Failures.Inc()
			return
		case st.Skipped:
		case st.Windows:
			rm.Took.WithLabelValues("windows").Observe(st.Took.Seconds())
			rm.WindowsRefreshed.SetToCurrentTime()
		default:
			rm.Took.WithLabelValues("days").Observe(st.Took.Seconds())
			rm.Refreshed.SetToCurrentTime()
		}
		// Every replica serves the gauges, whichever refreshed.
		refmtas, _, err := ds.RefMTAs(ctx)
		if err != nil {
			c.log.Warn("reading the per-reference-MTA figures failed; the gauges keep their values", "err", err)
			return
		}
		rm.SetRefMTAs(refmtas)
		for _, r := range refmtas {
			if r.GetFlagged() {
				c.log.Warn("a reference MTA's blocked share departs from the others': look at its network", "refmta", r.GetRefmtaId(),
					"family", dataset.FamilyName(r.GetFamily()), "port", r.GetPort(), "blocked", r.GetBlocked().GetShare(),
					"others", r.GetOthersBlocked().GetShare(), "charged", r.GetCharged())
			}
		}
	})
	go deliverer.Run(ctx)
	if *archiveDir != "" {
		a, err := newArchiver(*archiveDir, st, primary, c.log)
		if err != nil {
			return err
		}
		report := archiveMetrics(reg)
		go a.Every(ctx, archiveEvery, archive.Options{RetainRawDays: *retainRaw}, func(st archive.Stats, err error) {
			report(st, err)
			if err != nil {
				c.log.Error("archiving finished days failed; retrying in an hour", "dir", *archiveDir, "err", err)
			}
		})
	}
	health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	ln, err := listenCapped(*listen, maxGRPC, *grpcConnsPerAddr)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	hln, err := listenCapped(*httpListen, maxHTTP, *httpConnsPerAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("--http-listen: %w", err)
	}
	limiter := httpapi.NewLimiter(httpapi.LimitOptions{Rate: *httpRate, Burst: *httpBurst, TrustProxy: *trustProxy})
	registerLimits(reg, map[string]*ratelimit.Listener{"grpc": ln, "http": hln}, limiter)
	webOpts := webOptions{downloads: *downloadDir, publicURL: *publicURL, trustProxy: *trustProxy, archives: *archiveDir, stream: broker}
	if *submitRate > 0 {
		submissions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "op25b_submissions_total",
			Help: "One-off contributions (op25b-agent check --submit) by outcome."}, []string{"outcome"})
		for _, o := range submit.Outcomes {
			submissions.WithLabelValues(o)
		}
		reg.MustRegister(submissions)
		webOpts.submissions = submit.New(st, snapshots, sched.current, submit.Options{PerAddress: *submitRate, AddressBurst: *submitBurst,
			PerPrefix: *submitPrefixRate, PrefixBurst: *submitPrefixBurst, Logger: c.log,
			Count: func(o string) { submissions.WithLabelValues(o).Inc() }})
	}
	httpSrv := httpapi.NewServer(httpHandler(ds, st.Pool.Ping, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), limiter, webOpts, c.log))

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); grpcSrv.Serve(ln) }()
	go func() { defer wg.Done(); httpSrv.Serve(hln) }()
	c.log.Info("collector ready", "grpc", ln.Addr().String(), "web", "http://"+hln.Addr().String()+"/",
		"grpc_max_conns", maxGRPC, "http_max_conns", maxHTTP,
		"ca", caFile, "schedule", sched.current().GetVersion(), "refmtas", len(sched.current().GetReferenceMtas()), "version", version)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for {
		select {
		case <-hup:
			if asnSrc != nil {
				if err := asnSrc.Reload(); err != nil {
					c.log.Error("ASN reload failed; keeping the previous table", "err", err)
				}
			}
			if err := sched.reload(); err != nil {
				c.log.Error("schedule reload failed; keeping the previous one", "err", err)
			} else {
				c.log.Info("schedule reloaded", "version", sched.current().GetVersion())
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	c.log.Info("shutting down: finishing in-flight batches")
	health.Shutdown()
	if broker != nil {
		// Live subscribers are told why they are dropped, and their
		// gRPC streams end, which GracefulStop waits for.
		broker.Close()
	}
	done := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		grpcSrv.Stop()
	}
	httpSrv.Close()
	wg.Wait()
	return nil
}

// descriptorReserve is what the listeners leave of the open-file limit
// for the database pool, the ASN files and the rest.
const descriptorReserve = 256

// connCaps divides the process's open-file limit between the listeners, so
// that neither can starve the other: HTTP clients get httpMax connections,
// at most a quarter of the limit; gRPC agents grpcMax, by default all the
// rest but descriptorReserve. (Issue 10: 20,000 idle HTTP connections took
// the descriptors agents needed to upload.)
func connCaps(httpMax, grpcMax int, log *slog.Logger) (int, int, error) {
	files, err := ratelimit.FileLimit()
	if err != nil {
		log.Warn("cannot read the open-file limit; the listeners' caps are the flags'", "err", err)
		return httpMax, grpcMax, nil
	}
	return splitFiles(files, httpMax, grpcMax, log)
}

func splitFiles(files, httpMax, grpcMax int, log *slog.Logger) (int, int, error) {
	if httpMax <= 0 || httpMax > files/4 {
		log.Warn("HTTP connections capped at a quarter of the open-file limit", "asked", httpMax, "cap", files/4, "open_files", files)
		httpMax = files / 4
	}
	if grpcMax <= 0 {
		grpcMax = files - httpMax - descriptorReserve
	}
	if grpcMax <= 0 || httpMax <= 0 {
		return 0, 0, fmt.Errorf("an open-file limit of %d leaves no descriptors for connections: raise it (ulimit -n, LimitNOFILE=)", files)
	}
	if httpMax+grpcMax+descriptorReserve > files {
		log.Warn("--http-max-conns and --grpc-max-conns together exceed the open-file limit: one listener can starve the other",
			"open_files", files, "http", httpMax, "grpc", grpcMax)
	}
	return httpMax, grpcMax, nil
}

// listenCapped listens on addr with a cap on connections in all and per address.
func listenCapped(addr string, max, perAddr int) (*ratelimit.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ratelimit.NewListener(ln, max, perAddr), nil
}

// httpHandler is what the HTTP listener serves: the web page, the dataset
// API, /metrics and /healthz, every route behind the per-client limit.
// webOptions are what the HTTP listener serves besides the dataset.
type webOptions struct {
	downloads, publicURL string
	// submissions takes one-off contributions; nil: none.
	submissions *submit.Service
	trustProxy  bool
	// archives is the directory of the daily archives; empty: none.
	archives string
	// stream serves /api/v1/stream; nil: none.
	stream *stream.Broker
}

func httpHandler(q httpapi.Querier, ping func(context.Context) error, metrics http.Handler, limit *httpapi.Limiter, o webOptions, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	api := httpapi.Options{Logger: log, TrustProxy: o.trustProxy, PublicURL: o.publicURL, Stream: o.stream}
	if o.submissions != nil {
		api.Submissions = o.submissions
	}
	mux.Handle("/api/", httpapi.New(q, api))
	mux.Handle("/", web.New(q, web.Options{Logger: log, SoftwareVersion: version, Downloads: o.downloads, PublicURL: o.publicURL,
		Submissions: o.submissions != nil}))
	mux.Handle("GET /metrics", metrics)
	if o.archives != "" {
		mux.Handle("GET /archive/", http.StripPrefix("/archive", archive.Handler(o.archives)))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := ping(r.Context()); err != nil {
			http.Error(w, "database unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return limit.Wrap(mux)
}

// registerLimits exports what the listeners' caps and the HTTP rate limit
// refused.
func registerLimits(reg *prometheus.Registry, listeners map[string]*ratelimit.Listener, limit *httpapi.Limiter) {
	for name, ln := range listeners {
		labels := prometheus.Labels{"listener": name}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "op25b_listener_connections", ConstLabels: labels,
				Help: "Connections open on a listener."}, func() float64 { return float64(ln.Stats().Open) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "op25b_listener_refused_total", ConstLabels: prometheus.Labels{"listener": name, "cap": "all"},
				Help: "Connections closed at accept because a listener's cap (all: in all, address: per client address) was reached."},
				func() float64 { return float64(ln.Stats().RefusedAll) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "op25b_listener_refused_total", ConstLabels: prometheus.Labels{"listener": name, "cap": "address"},
				Help: "Connections closed at accept because a listener's cap (all: in all, address: per client address) was reached."},
				func() float64 { return float64(ln.Stats().RefusedSource) }),
		)
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "op25b_http_rate_limited_total",
		Help: "HTTP requests refused with 429: their client was over --http-rate."}, func() float64 { return float64(limit.Refused()) }))
}

// followASN registers every table the source loads as a snapshot and puts
// it in force, and watches the files for changes.
func followASN(ctx context.Context, src *asn.Source, last *asn.Table, st *store.Store, snaps *ingest.Snapshots, log *slog.Logger) {
	go src.Watch(ctx, time.Minute)
	for {
		var err error
		if last, err = putInForce(ctx, src.Current(), last, st, snaps, log); err != nil {
			log.Error("registering the ASN snapshot failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// putInForce registers t as a snapshot and makes it the one in force,
// unless it already is (t == last). It returns the table in force.
func putInForce(ctx context.Context, t, last *asn.Table, st *store.Store, snaps *ingest.Snapshots, log *slog.Logger) (*asn.Table, error) {
	if t == last {
		return last, nil
	}
	m := t.Meta()
	id, err := st.RegisterSnapshot(ctx, m.SHA256, m.Format.String(), strings.Join(m.Paths, ","), m.Prefixes4+m.Prefixes6)
	if err != nil {
		return last, err
	}
	var holders []store.ASHolder
	for n, h := range t.Holders() {
		holders = append(holders, store.ASHolder{ASN: n, Name: h.Name, Country: h.Country})
	}
	if err := st.UpsertASNames(ctx, holders); err != nil {
		return last, err
	}
	snaps.Add(t, id, m.Loaded)
	log.Info("ASN snapshot in force", "id", id, "format", m.Format, "prefixes_v4", m.Prefixes4, "prefixes_v6", m.Prefixes6, "as_names", len(holders))
	return t, nil
}

// scheduleSource builds the agents' schedule from reference MTA identity
// documents; a reload that fails keeps the previous schedule.
type scheduleSource struct {
	files                     []string
	interval, jitter, timeout time.Duration
	mu                        sync.Mutex
	sched                     *op25bv1.Schedule
}

func (s *scheduleSource) reload() error {
	sch := &op25bv1.Schedule{Interval: durationpb.New(s.interval),
		Jitter: durationpb.New(s.jitter), ProbeTimeout: durationpb.New(s.timeout)}
	for _, f := range s.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--refmta: %w", err)
		}
		var m op25bv1.ReferenceMTA
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &m); err != nil {
			return fmt.Errorf("--refmta %s: not an identity document: %w", f, err)
		}
		if len(m.PublicKey) != 32 || len(m.Addresses) == 0 || m.Id == "" {
			return fmt.Errorf("--refmta %s: needs an id, a 32-byte publicKey and addresses", f)
		}
		sch.ReferenceMtas = append(sch.ReferenceMtas, &m)
	}
	sch.Version = api.ScheduleVersion(sch)
	s.mu.Lock()
	s.sched = sch
	s.mu.Unlock()
	return nil
}

func (s *scheduleSource) current() *op25bv1.Schedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sched
}

func token(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: op25b-collector token create|list|revoke")
	}
	sub, args := args[0], args[1:]
	var c common
	fs := flag.NewFlagSet("op25b-collector token "+sub, flag.ContinueOnError)
	c.register(fs)
	label := fs.String("label", "", "who the token is for (shown in listings)")
	kind := fs.String("kind", "agent", "agent or refmta")
	expires := fs.Duration("expires", 30*24*time.Hour, "how long the token can be used")
	uses := fs.Int("uses", 1, "how many principals may enroll with it")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	ctx := context.Background()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	as := &auth.Service{Pool: st.Pool, Now: time.Now}
	switch sub {
	case "create":
		k, err := auth.ParseKind(*kind)
		if err != nil {
			return err
		}
		if *label == "" {
			return errors.New("token create: --label is required")
		}
		id, secret, err := as.CreateToken(ctx, *label, k, time.Now().Add(*expires), *uses)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "created %s (%s, %d use(s), expires %s); the token is shown once:\n", id, k, *uses, time.Now().Add(*expires).UTC().Format(time.RFC3339))
		fmt.Println(secret)
	case "list":
		toks, err := as.ListTokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tLABEL\tUSES\tEXPIRES\tSTATE")
		for _, t := range toks {
			state := "active"
			switch {
			case t.RevokedAt != nil:
				state = "revoked"
			case time.Now().After(t.ExpiresAt):
				state = "expired"
			case t.Uses >= t.MaxUses:
				state = "used up"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Kind, t.Label, t.Uses, t.MaxUses, t.ExpiresAt.UTC().Format(time.RFC3339), state)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("usage: op25b-collector token revoke ID")
		}
		return as.RevokeToken(ctx, fs.Arg(0))
	default:
		return fmt.Errorf("token: unknown subcommand %q (want create, list or revoke)", sub)
	}
	return nil
}

func principal(args []string) error {
	if len(args) == 0 || args[0] != "revoke" {
		return errors.New("usage: op25b-collector principal revoke ID")
	}
	var c common
	fs := flag.NewFlagSet("op25b-collector principal revoke", flag.ContinueOnError)
	c.register(fs)
	if err := c.parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: op25b-collector principal revoke ID")
	}
	ctx := context.Background()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	return (&auth.Service{Pool: st.Pool, Now: time.Now}).Revoke(ctx, fs.Arg(0))
}

// rebuild recomputes every rollup from the raw results.
func rebuild(args []string, stdout io.Writer) error {
	var c common
	var rollups rollupFlags
	fs := flag.NewFlagSet("op25b-collector rebuild", flag.ContinueOnError)
	c.register(fs)
	rollups.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	ds, err := rollups.open(st)
	if err != nil {
		return err
	}
	c.log.Info("rebuilding the published rollups from raw results; ingest waits until it commits, readers see the old state")
	res, err := ds.Rebuild(ctx, c.log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilt from %d results: %d ASN and family keys, in %s\n", res.Results, res.Keys, res.Took.Round(time.Millisecond))
	return nil
}

// archiveEvery is how often serve archives the days that finished.
const archiveEvery = time.Hour

// checkRetention refuses a --retain-raw-days that would retire days
// ingest still accepts results of: such a result would find no partition.
func checkRetention(days int) error {
	if maxAge := int(ingest.DefaultLimits.MaxAge / dataset.Day); days < 0 || days != 0 && days <= maxAge {
		return fmt.Errorf("--retain-raw-days %d: must be more than %d, the days ingest accepts a result for after its measurement (or 0: keep all)", days, maxAge)
	}
	return nil
}

// newArchiver returns the archiver of dir, on the rollups' clock.
func newArchiver(dir string, st *store.Store, ds *dataset.Dataset, log *slog.Logger) (*archive.Archiver, error) {
	now, err := testOnlyClock()
	if err != nil {
		return nil, err
	}
	return &archive.Archiver{Dir: dir, Results: ds, Store: st, Now: now, Log: log}, nil
}

// archiveMetrics registers the archiver's metrics and returns what sets
// them from one run's outcome.
func archiveMetrics(reg *prometheus.Registry) func(archive.Stats, error) {
	days := prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_archive_days_total",
		Help: "Daily archive files written (new days, or days whose results changed)."})
	retired := prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_archive_retired_days_total",
		Help: "Days whose raw results were dropped from the database once archived (--retain-raw-days)."})
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "op25b_archive_failures_total",
		Help: "Archive runs that failed (retried at the next)."})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "op25b_archive_last_day_timestamp_seconds",
		Help: "Start of the latest UTC day the archive's manifest lists (Unix time); 0 until a run of this collector read it."})
	reg.MustRegister(days, retired, failures, last)
	return func(st archive.Stats, err error) {
		days.Add(float64(st.Days))
		retired.Add(float64(st.Retired))
		if err != nil {
			failures.Inc()
		}
		if !st.Last.IsZero() {
			last.Set(float64(st.Last.Unix()))
		}
	}
}

// archiveDays writes the daily archives once, and retires raw results
// with --retain-raw-days.
func archiveDays(args []string, stdout io.Writer) error {
	var c common
	fs := flag.NewFlagSet("op25b-collector archive", flag.ContinueOnError)
	c.register(fs)
	dir := fs.String("dir", "", "directory of the daily archives (required): DIR/YYYY/op25b-results-YYYY-MM-DD.parquet and DIR/manifest.json")
	from := fs.String("from", "", "first day to write, YYYY-MM-DD (UTC); empty: the first with results")
	to := fs.String("to", "", "last day to write, YYYY-MM-DD (UTC); empty: yesterday, the last finished day")
	retainRaw := fs.Int("retain-raw-days", 0, "drop the raw results of days older than this many days once the archive holds them (the rollups stay); more than the 30 days ingest accepts results for; 0: keep all")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("archive: --dir is required")
	}
	if err := checkRetention(*retainRaw); err != nil {
		return err
	}
	var o archive.Options
	for _, f := range []struct {
		name, v string
		t       *time.Time
	}{{"--from", *from, &o.From}, {"--to", *to, &o.To}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, f.v)
		if err != nil {
			return fmt.Errorf("%s %q: want a day, YYYY-MM-DD", f.name, f.v)
		}
		*f.t = t
	}
	o.RetainRawDays = *retainRaw
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	ds, err := dataset.New(st.Pool, dataset.Config{SoftwareVersion: version}, nil)
	if err != nil {
		return err
	}
	a, err := newArchiver(*dir, st, ds, c.log)
	if err != nil {
		return err
	}
	res, err := a.Run(ctx, o)
	if err != nil {
		return err
	}
	if res.Locked {
		return errors.New("archive: another collector is archiving (it holds the archive lock); try again when it is done")
	}
	last := "none"
	if !res.Last.IsZero() {
		last = res.Last.Format(time.DateOnly)
	}
	fmt.Fprintf(stdout, "archived %d days (%d results, %d bytes) in %s; the manifest's latest day: %s; raw results retired: %d days, kept: %d days\n",
		res.Days, res.Rows, res.Bytes, res.Took.Round(time.Millisecond), last, res.Retired, res.Kept)
	return nil
}

// summary prints the verdicts of recent results per ASN, family and port,
// the reference MTAs' figures, and the results agents lost before upload.
func summary(args []string, stdout io.Writer) error {
	var c common
	var rollups rollupFlags
	fs := flag.NewFlagSet("op25b-collector summary", flag.ContinueOnError)
	c.register(fs)
	rollups.register(fs)
	since := fs.Duration("since", 24*time.Hour, "window of measurement times to summarise")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	ctx := context.Background()
	st, closeStore, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	now := time.Now()
	counts, err := st.VerdictCounts(ctx, now.Add(-*since))
	if err != nil {
		return err
	}
	if err := printSummary(stdout, counts); err != nil {
		return err
	}
	ds, err := rollups.open(st)
	if err != nil {
		return err
	}
	refmtas, window, err := ds.RefMTAs(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if err := printRefMTAs(stdout, refmtas, window); err != nil {
		return err
	}
	// Sightings arrive in batches: leave them a minute before calling an
	// OPEN claim uncorroborated.
	flagged, err := st.Uncorroborated(ctx, now.Add(-*since), now.Add(-time.Minute))
	if err != nil {
		return err
	}
	for agent, ids := range flagged {
		fmt.Fprintf(stdout, "flagged: %s claims OPEN in %d results that no reference MTA reported seeing (first %s)\n", agent, len(ids), ids[0])
	}
	losses, err := st.AgentLosses(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	return printLosses(stdout, losses, now.Add(-*since))
}

// maxLossLines bounds the agents printLosses lists one by one.
const maxLossLines = 20

// printLosses writes the results agents lost before upload, all time: the
// total by cause, how many agents reported losing any and how many lost
// more in the window since since, and a line for each of the agents that
// lost the most.
func printLosses(w io.Writer, losses []store.AgentLoss, since time.Time) error {
	var total store.SpoolLoss
	grew := 0
	for _, a := range losses {
		total.Full += a.Lost.Full
		total.NoSpace += a.Lost.NoSpace
		total.WriteError += a.Lost.WriteError
		total.Corrupt += a.Lost.Corrupt
		if !a.Increased.Before(since) {
			grew++
		}
	}
	fmt.Fprintf(w, "results agents lost before upload, all time: %d (spool full %d, disk full %d, write error %d, damaged %d); agents that reported losses: %d, that lost more in the window: %d\n",
		total.Total(), total.Full, total.NoSpace, total.WriteError, total.Corrupt, len(losses), grew)
	if len(losses) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tLABEL\tLOST\tSPOOL FULL\tDISK FULL\tWRITE ERROR\tDAMAGED\tSPOOLS\tLAST GREW")
	for _, a := range losses[:min(len(losses), maxLossLines)] {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", a.Agent, a.Label, a.Lost.Total(), a.Lost.Full, a.Lost.NoSpace,
			a.Lost.WriteError, a.Lost.Corrupt, a.Spools, a.Increased.UTC().Format(time.DateTime))
	}
	if n := len(losses) - maxLossLines; n > 0 {
		fmt.Fprintf(tw, "(and %d more agents)\n", n)
	}
	return tw.Flush()
}

// printSummary writes one line per ASN, family and port: results, agents
// and the count of each verdict seen.
func printSummary(w io.Writer, counts []store.VerdictCount) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ASN\tFAMILY\tPORT\tRESULTS\tAGENTS\tVERDICTS")
	type key struct {
		asn    uint32
		family uint8
		port   uint16
	}
	var order []key
	rows := map[key][]store.VerdictCount{}
	for _, c := range counts {
		k := key{c.ASN, c.Family, c.Port}
		if rows[k] == nil {
			order = append(order, k)
		}
		rows[k] = append(rows[k], c)
	}
	if len(order) == 0 {
		fmt.Fprintln(tw, "(no results in the window yet)")
	}
	for _, k := range order {
		var n, agents int64
		var parts []string
		for _, c := range rows[k] {
			n += c.Results
			agents = max(agents, c.Agents)
			part := fmt.Sprintf("%s %d", verdict.Verdict(c.Verdict), c.Results)
			if c.Charged > 0 {
				part += fmt.Sprintf(" (%d charged to reference MTAs)", c.Charged)
			}
			parts = append(parts, part)
		}
		asnText := "unknown"
		if k.asn != 0 {
			asnText = fmt.Sprintf("AS%d", k.asn)
			if c := rows[k][0]; c.Name != "" {
				asnText += " " + c.Name
				if c.Country != "" {
					asnText += " (" + c.Country + ")"
				}
			}
		}
		fmt.Fprintf(tw, "%s\tIPv%d\t%d\t%d\t%d\t%s\n", asnText, k.family, k.port, n, agents, strings.Join(parts, ", "))
	}
	return tw.Flush()
}

// printRefMTAs writes one line per reference MTA, family and port: results,
// verdict-group shares with their Wilson intervals, the results charged to
// its side, and the flag when its blocked share departs from the others'.
func printRefMTAs(w io.Writer, refmtas []*op25bv1.RefMTAStats, window *op25bv1.TimeRange) error {
	fmt.Fprintf(w, "reference MTAs, %s to %s:\n", window.GetStart().AsTime().Format(time.DateOnly),
		window.GetEnd().AsTime().Add(-time.Second).Format(time.DateOnly))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REFMTA\tFAMILY\tPORT\tRESULTS\tOPEN\tBLOCKED\tOTHERS BLOCKED\tINTERCEPTED\tCHARGED\tFLAG")
	if len(refmtas) == 0 {
		fmt.Fprintln(tw, "(no results from enrolled reference MTAs in the window)")
	}
	share := func(g *op25bv1.GroupShare) string {
		return fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*g.GetShare(), 100*g.GetWilsonLow(), 100*g.GetWilsonHigh())
	}
	for _, r := range refmtas {
		flag := ""
		if r.GetFlagged() {
			flag = "FLAGGED: blocked share above the others'; look at its network"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", r.GetRefmtaId(), dataset.FamilyName(r.GetFamily()), r.GetPort(),
			r.GetResults(), share(r.GetOpen()), share(r.GetBlocked()), share(r.GetOthersBlocked()), share(r.GetIntercepted()), r.GetCharged(), flag)
	}
	return tw.Flush()
}
