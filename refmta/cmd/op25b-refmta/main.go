// Command op25b-refmta is the OP25B Observatory reference MTA: it answers
// agents' probes on 25, 587, 465 and a control port with signed statements
// that prove they reached it unmodified, and never accepts mail.
//
//	op25b-refmta [serve] [flags]   run the reference MTA
//	op25b-refmta identity [flags]  print the identity document agents use
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/internal/collectorclient"
	"github.com/op25b/observatory/internal/flagenv"
	"github.com/op25b/observatory/internal/keyfile"
	"github.com/op25b/observatory/internal/proof"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/identity"
	"github.com/op25b/observatory/refmta/sighting"
	"github.com/op25b/observatory/refmta/smtpd"
	"github.com/op25b/observatory/refmta/upload"
)

var version = "dev"

type options struct {
	listen, advertise flagenv.List
	httpListen        string
	ports             string
	controlPort       uint
	stateDir          string
	id, hostname      string
	maxSessions       int
	maxPerSource      int
	maxRefusals       int
	rate              float64
	burst             int
	idle, total       time.Duration
	queue             int
	logLevel          string
	collectors        flagenv.List
	ca                string
	enroll            string
}

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve", "identity":
		err = run(cmd, args)
	case "version":
		fmt.Println("op25b-refmta", version)
	default:
		fmt.Fprintf(os.Stderr, "op25b-refmta: unknown command %q (want serve, identity or version)\n", cmd)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "op25b-refmta:", err)
		os.Exit(1)
	}
}

func run(cmd string, args []string) error {
	var o options
	fs := flag.NewFlagSet("op25b-refmta "+cmd, flag.ContinueOnError)
	fs.Var(&o.listen, "listen", "address to listen on, repeatable or comma-separated (default: all addresses)")
	fs.Var(&o.advertise, "advertise", "addresses published in the identity document (default: the --listen addresses)")
	fs.StringVar(&o.httpListen, "http-listen", "", "also publish the identity document over HTTP on this address (e.g. :8025), at "+identity.DocumentPath)
	fs.StringVar(&o.ports, "ports", "25,587,465", "SMTP ports, each PORT or PORT:KIND with KIND smtp, submission or smtps")
	fs.UintVar(&o.controlPort, "control-port", 443, "control port (implicit TLS; tells agents their egress address)")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/op25b-refmta", "directory for the key (key.pem, 0600) and identity.json")
	fs.StringVar(&o.id, "id", "", "reference MTA id (default: refmta-<key id>)")
	fs.StringVar(&o.hostname, "hostname", "", "host name in banners and the certificate (default: the system host name)")
	fs.IntVar(&o.maxSessions, "max-sessions", smtpd.DefaultMaxSessions, "maximum concurrent sessions; beyond it sessions get a signed refusal")
	fs.IntVar(&o.maxPerSource, "max-per-source", smtpd.DefaultMaxPerSource, "maximum concurrent sessions per source (IPv4 address or IPv6 /64)")
	fs.Float64Var(&o.rate, "rate", smtpd.DefaultPerSourceRate, "new sessions per second per source (negative: no limit)")
	fs.IntVar(&o.burst, "burst", smtpd.DefaultPerSourceBurst, "burst of new sessions per source")
	fs.IntVar(&o.maxRefusals, "max-refusals", smtpd.DefaultMaxRefusals, "maximum refused sessions answered at once; beyond it connections are closed without a byte")
	fs.DurationVar(&o.idle, "idle-timeout", smtpd.DefaultIdleTimeout, "time allowed for each command")
	fs.DurationVar(&o.total, "session-timeout", smtpd.DefaultSessionTimeout, "time allowed for a whole session (keep it above the agents' 30s deadline)")
	fs.IntVar(&o.queue, "sighting-queue", 100000, "sightings kept for upload before the oldest are dropped")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Var(&o.collectors, "collector", "collector gRPC address (host:port) to upload sightings to, or several sharing one database (comma-separated or repeated; the first that answers, then the next); empty: keep them queued")
	fs.StringVar(&o.ca, "collector-ca", "", "CA certificate of the collector (its local CA's ca.pem); empty: system roots")
	fs.StringVar(&o.enroll, "enroll", "", "enrollment token, needed once: the credential is then kept in --state-dir")
	enrollFile := fs.String("enroll-file", "", "file whose first line is the enrollment token, instead of --enroll (a secret mounted into a container)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		os.Exit(2)
	}
	if err := flagenv.Apply(fs, "OP25B"); err != nil {
		return err
	}
	var err error
	if o.enroll, err = collectorclient.Token(o.enroll, *enrollFile); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ports, err := parsePorts(o.ports)
	if err != nil {
		return err
	}
	if o.controlPort == 0 || o.controlPort > 65535 {
		return fmt.Errorf("--control-port %d out of range", o.controlPort)
	}
	if o.hostname == "" {
		o.hostname, _ = os.Hostname()
	}
	if o.total > 0 && o.total <= smtpd.AgentDeadline {
		log.Warn("--session-timeout is not above the longest deadline of an agent: sessions of agents on slow paths will be cut off",
			"session_timeout", o.total, "agent_deadline", smtpd.AgentDeadline)
	}
	key, created, err := keyfile.LoadOrCreate(filepath.Join(o.stateDir, "key.pem"))
	if err != nil {
		return err
	}
	if created {
		log.Info("generated a new identity key", "path", filepath.Join(o.stateDir, "key.pem"))
	}
	doc, err := document(o, key, ports)
	if err != nil {
		return err
	}
	if cmd == "identity" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(doc)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	return serve(o, log, key, ports, doc)
}

type port struct {
	num  uint16
	kind smtpd.Kind
}

func parsePorts(s string) ([]port, error) {
	var out []port
	for _, f := range strings.Split(s, ",") {
		num, kind, hasKind := strings.Cut(strings.TrimSpace(f), ":")
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--ports: %q is not a port", f)
		}
		p := port{num: uint16(n), kind: smtpd.KindForPort(uint16(n))}
		if hasKind {
			if p.kind, err = smtpd.ParseKind(kind); err != nil {
				return nil, fmt.Errorf("--ports: %w", err)
			}
		}
		if p.kind == smtpd.Control {
			return nil, fmt.Errorf("--ports: %d is the control port's kind; use --control-port", n)
		}
		out = append(out, p)
	}
	return out, nil
}

func document(o options, key ed25519.PrivateKey, ports []port) (*op25bv1.ReferenceMTA, error) {
	pub := key.Public().(ed25519.PublicKey)
	doc := &op25bv1.ReferenceMTA{Id: o.id, PublicKey: pub, ControlPort: uint32(o.controlPort), Hostname: o.hostname}
	if doc.Id == "" {
		doc.Id = "refmta-" + proof.KeyID(pub)
	}
	for _, p := range ports {
		doc.Ports = append(doc.Ports, uint32(p.num))
		if p.kind == smtpd.SMTPS {
			doc.ImplicitTlsPorts = append(doc.ImplicitTlsPorts, uint32(p.num))
		}
	}
	adv := o.advertise
	if len(adv) == 0 {
		adv = o.listen
	}
	for _, a := range adv {
		ip, err := netip.ParseAddr(strings.Trim(a, "[]"))
		if err != nil {
			return nil, fmt.Errorf("--advertise/--listen: %q is not an IP address", a)
		}
		if ip.IsUnspecified() {
			continue
		}
		doc.Addresses = append(doc.Addresses, ip.Unmap().String())
	}
	return doc, nil
}

func serve(o options, log *slog.Logger, key ed25519.PrivateKey, ports []port, doc *op25bv1.ReferenceMTA) error {
	cert, err := identity.Certificate(key, o.hostname, time.Now())
	if err != nil {
		return err
	}
	var smtpPorts []uint16
	for _, p := range ports {
		smtpPorts = append(smtpPorts, p.num)
	}
	queue := sighting.NewQueue(o.queue)
	srv := smtpd.New(smtpd.Config{Key: key, Cert: cert, Hostname: o.hostname, SMTPPorts: smtpPorts,
		MaxSessions: o.maxSessions, MaxPerSource: o.maxPerSource, MaxRefusals: o.maxRefusals,
		PerSourceRate: o.rate, PerSourceBurst: o.burst,
		IdleTimeout: o.idle, SessionTimeout: o.total, Sightings: queue, Logger: log})

	all := append(ports, port{num: uint16(o.controlPort), kind: smtpd.Control})
	addrs := []string(o.listen)
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	type bound struct {
		ln   net.Listener
		kind smtpd.Kind
	}
	var lns []bound
	for _, a := range addrs {
		for _, p := range all {
			addr := net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(int(p.num)))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				for _, b := range lns {
					b.ln.Close()
				}
				return fmt.Errorf("listen %s (%s): %w", addr, p.kind, err)
			}
			lns = append(lns, bound{ln, p.kind})
		}
	}
	var web *http.Server
	if o.httpListen != "" {
		h, err := identity.Handler(doc)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", o.httpListen)
		if err != nil {
			for _, b := range lns {
				b.ln.Close()
			}
			return fmt.Errorf("--http-listen: %w", err)
		}
		web = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
		go web.Serve(ln)
		log.Info("publishing the identity document", "url", "http://"+ln.Addr().String()+identity.DocumentPath)
	}
	if err := identity.WriteDocument(filepath.Join(o.stateDir, "identity.json"), doc); err != nil {
		return err
	}
	log.Info("reference MTA ready", "id", doc.Id, "key", proof.EncodeKey(doc.PublicKey),
		"listen", len(lns), "identity", filepath.Join(o.stateDir, "identity.json"), "version", version)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	for _, b := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, b.ln, b.kind); err != nil {
				log.Error("listener stopped", "addr", b.ln.Addr(), "err", err)
			}
		}()
	}
	if len(o.collectors) > 0 {
		conn, err := collectorclient.Dial(o.collectors, o.ca)
		if err != nil {
			return err
		}
		defer conn.Close()
		// Enrollment waits for the collector in the background: the SMTP
		// service does not depend on it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := collectorclient.Ensure(ctx, conn, o.stateDir, o.enroll, op25bv1.PrincipalKind_PRINCIPAL_KIND_REFMTA, o.hostname, version)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("enrolling with the collector failed; sightings stay queued", "err", err)
				}
				return
			}
			if id.ID != doc.Id {
				log.Warn("enrolled under another id than the identity document's: the collector will not verify this reference MTA's statements",
					"enrolled", id.ID, "document", doc.Id)
			}
			log.Info("uploading sightings", "collector", o.collectors.String(), "as", id.ID)
			u := &upload.Uploader{Conn: conn, Identity: id, Queue: queue, Log: log}
			if err := u.Run(ctx); err != nil {
				log.Error("sighting upload stopped", "err", err)
			}
		}()
	} else {
		log.Warn("no --collector: sightings stay queued here and are not uploaded")
	}
	<-ctx.Done()
	if web != nil {
		web.Close()
	}
	log.Info("shutting down; waiting for sessions to end")
	wg.Wait()
	st := srv.Stats()
	log.Info("stopped", "sessions_served", st.Served, "refused_sessions", st.RefusedSessions, "refused_rate", st.RefusedRate,
		"closed_silently", st.Silent, "sightings_queued", queue.Len(), "sightings_dropped", queue.Dropped())
	return nil
}
