package probe

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/uuidv7"
	"github.com/op25b/observatory/internal/verdict"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

// testTimeout bounds each probe in tests against loopback servers, which
// answer in microseconds; a failure still ends in bounded time.
const testTimeout = 5 * time.Second

func runRound(t *testing.T, targets ...Target) []Result {
	t.Helper()
	res, err := Round(context.Background(), Config{Timeout: testTimeout}, targets)
	if err != nil {
		t.Fatalf("Round: %v", err)
	}
	return res
}

// refTarget is the target of a real reference MTA started by refmtatest:
// SMTP, submission, SMTPS.
func refTarget(s *refmtatest.Server) Target {
	return Target{
		RefMTA: "ref", Key: s.Public(), Addr: s.Addr, ControlPort: s.Ports[smtpd.Control],
		Ports: []Port{{Number: s.Ports[smtpd.SMTP]}, {Number: s.Ports[smtpd.Submission]},
			{Number: s.Ports[smtpd.SMTPS], ImplicitTLS: true}},
	}
}

type want struct {
	verdict verdict.Verdict
	failure string
}

func check(t *testing.T, res []Result, wants ...want) {
	t.Helper()
	if len(res) != len(wants) {
		t.Fatalf("got %d results; want %d", len(res), len(wants))
	}
	for i, r := range res {
		if r.Verdict != wants[i].verdict || r.Failure != wants[i].failure {
			t.Errorf("port %d: verdict %v (%q): %s; want %v (%q)", r.Port, r.Verdict, r.Failure, r.Detail, wants[i].verdict, wants[i].failure)
		}
	}
}

func TestOpenAgainstRefMTA(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			if addr == "::1" {
				testenv.NeedIPv6Loopback(t)
			}
			s := refmtatest.Start(t, addr, nil)
			tg := refTarget(s)
			before := time.Now()
			res := runRound(t, tg)
			open := want{verdict.Open, ""}
			check(t, res, open, open, open)
			fam := FamilyOf(s.Addr)
			for i, r := range res {
				if r.Port != tg.Ports[i].Number || r.Addr != s.Addr || r.Family != fam || r.RefMTA != "ref" {
					t.Errorf("result %d = port %d addr %s family %v refmta %q; want %d %s %v ref", i, r.Port, r.Addr, r.Family, r.RefMTA, tg.Ports[i].Number, s.Addr, fam)
				}
				if _, ts, err := uuidv7.Parse(r.ID); err != nil || ts.Before(before.Truncate(time.Millisecond)) {
					t.Errorf("result id %q: %v, time %v", r.ID, err, ts)
				}
				c := r.Control
				if !c.Reached || c.Failure != "" || c.ObservedSource != s.Addr || !slices.Equal(c.ServedPorts, s.SMTPPorts()) || c.Port != tg.ControlPort {
					t.Errorf("control = %+v; want reached from %s serving %v", c, s.Addr, s.SMTPPorts())
				}
				if st, err := proof.Verify(s.Public(), c.Statement); err != nil || st.Source != s.Addr || st.Port != tg.ControlPort {
					t.Errorf("control statement %q = %+v, %v; want one the collector can verify", c.Statement, st, err)
				}
				e := r.Evidence
				if !e.ProofValid || e.ProofError != "" || e.ObservedSource != s.Addr || !slices.Equal(e.Capabilities, e.SignedCapabilities) || e.Statement == "" {
					t.Errorf("port %d evidence = %+v; want a valid proof from %s", r.Port, e, s.Addr)
				}
				if !strings.HasPrefix(e.Banner, "220 ") {
					t.Errorf("port %d banner = %q; want 220", r.Port, e.Banner)
				}
				if e.STARTTLSOffered == tg.Ports[i].ImplicitTLS {
					t.Errorf("port %d STARTTLS offered = %v; want %v", r.Port, e.STARTTLSOffered, !tg.Ports[i].ImplicitTLS)
				}
				if r.TLS == nil || !r.TLS.PinValid || len(r.TLS.CertificateSHA256) != 64 || r.TLS.Version < 0x0303 {
					t.Errorf("port %d TLS = %+v; want a pinned TLS 1.2+ session", r.Port, r.TLS)
				}
				tm := r.Timings
				if tm.Connect <= 0 || tm.Banner <= 0 || tm.EHLO <= 0 || tm.TLSHandshake <= 0 || tm.Total < tm.Connect {
					t.Errorf("port %d timings = %+v; want every phase", r.Port, tm)
				}
				if len(r.Nonce) != proof.NonceLen {
					t.Errorf("port %d nonce = %x", r.Port, r.Nonce)
				}
			}
			// The reference MTA saw each probe's nonce: the collector joins
			// results to sightings by it.
			testenv.WaitFor(t, "4 sightings", 2*time.Second, func() bool { return s.Sightings.Len() >= 4 })
			seen := map[string]uint16{}
			for _, sg := range s.Sightings.Peek(100) {
				seen[hex.EncodeToString(sg.Nonce)] = sg.Port
			}
			for _, r := range res {
				if p, ok := seen[hex.EncodeToString(r.Nonce)]; !ok || p != r.Port {
					t.Errorf("port %d: no sighting for nonce %x (sightings %v)", r.Port, r.Nonce, seen)
				}
			}
		})
	}
}

func TestNoncesAreFresh(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	res := runRound(t, refTarget(s), refTarget(s))
	seen := map[string]bool{}
	for _, r := range res {
		k := hex.EncodeToString(r.Nonce)
		if seen[k] || bytes.Equal(r.Nonce, make([]byte, proof.NonceLen)) {
			t.Errorf("nonce %s reused or zero", k)
		}
		seen[k] = true
	}
}

func TestForeignCertificate(t *testing.T) {
	foreign := certificate(t, newKey(t), "proxy.example")
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.Cert = foreign })
	res := runRound(t, refTarget(s))
	tampered := want{verdict.Tampered, FailureCertificateMismatch}
	check(t, res, tampered, tampered, tampered)
	for _, r := range res {
		if r.TLS == nil || r.TLS.PinValid || !strings.Contains(r.TLS.Subject, "proxy.example") {
			t.Errorf("port %d TLS = %+v; want the foreign certificate recorded", r.Port, r.TLS)
		}
		if r.Control.Reached || r.Control.Failure != FailureCertificateMismatch {
			t.Errorf("control = %+v; want not reached, certificate_mismatch", r.Control)
		}
	}
}

// TestInterceptorCopyingOurSubject: an interceptor that copies our
// certificate's subject (sslsplit does) is given away by its issuer, which
// the detail names and the evidence keeps with the whole chain.
func TestInterceptorCopyingOurSubject(t *testing.T) {
	key := newKey(t)
	forged := issued(t, newKey(t), "fake.test", "ISP Inspection CA")
	tg := fakeRefMTA(t, "127.0.0.1", key, func(f *fakeMTA) {
		if f.implicitTLS && f.served == nil {
			f.cert = forged
		}
	})
	res := runRound(t, tg)
	check(t, res, want{verdict.Open, ""}, want{verdict.Tampered, FailureCertificateMismatch})
	tl := res[1].TLS
	if tl == nil || tl.PinValid || tl.Subject != "CN=fake.test" || tl.Issuer != "CN=ISP Inspection CA" ||
		len(tl.ChainSHA256) != 2 || tl.ChainSHA256[0] != tl.CertificateSHA256 || !slices.Equal(tl.SANs, []string{"fake.test"}) ||
		tl.NotAfter.Before(tl.NotBefore) || tl.NotBefore.IsZero() {
		t.Errorf("TLS = %+v; want the forged leaf's subject, issuer, names, validity and both chain hashes", tl)
	}
	if !strings.Contains(res[1].Detail, "ISP Inspection CA") {
		t.Errorf("detail %q; want it to name the foreign issuer", res[1].Detail)
	}
}

func TestWrongKey(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	tg := refTarget(s)
	tg.Key = newKey(t).Public().(ed25519.PublicKey)
	res := runRound(t, tg)
	bad := want{verdict.Intercepted, FailureProofInvalid}
	check(t, res, bad, bad, bad)
	for _, r := range res {
		if r.Evidence.ProofValid || r.Evidence.ObservedSource.IsValid() || r.Evidence.Statement == "" {
			t.Errorf("port %d evidence = %+v; want an unverified statement kept", r.Port, r.Evidence)
		}
	}
}

func TestRefusedPort(t *testing.T) {
	refused := closedPort(t, "127.0.0.1")
	unlisted := closedPort(t, "127.0.0.1")
	s := refmtatest.Start(t, "127.0.0.1", func(c *smtpd.Config) { c.SMTPPorts = append(c.SMTPPorts, refused) })
	tg := refTarget(s)
	tg.Ports = []Port{{Number: s.Ports[smtpd.SMTP]}, {Number: refused}, {Number: unlisted}}
	res := runRound(t, tg)
	check(t, res, want{verdict.Open, ""}, want{verdict.BlockedReset, FailureConnectionRefused},
		want{verdict.Inconclusive, FailurePortNotServed})

	t.Run("control down", func(t *testing.T) {
		tg.ControlPort = closedPort(t, "127.0.0.1")
		res := runRound(t, tg)
		check(t, res, want{verdict.Open, ""}, want{verdict.Inconclusive, FailureConnectionRefused},
			want{verdict.Inconclusive, FailureConnectionRefused})
		if c := res[0].Control; c.Reached || c.Failure != FailureConnectionRefused || c.ObservedSource.IsValid() {
			t.Errorf("control = %+v; want not reached, connection_refused", c)
		}
		// Without the control port no repeat could make a refusal a block.
		if n := len(res[1].Attempts); n != 1 {
			t.Errorf("%d attempts of a refused port with the control port down; want 1", n)
		}
	})
}

func TestSTARTTLSStripped(t *testing.T) {
	tg := fakeRefMTA(t, "127.0.0.1", newKey(t), func(f *fakeMTA) { f.strip = true })
	res := runRound(t, tg)
	check(t, res, want{verdict.Tampered, FailureSTARTTLSStripped}, want{verdict.Open, ""})
	e := res[0].Evidence
	if e.STARTTLSOffered || !slices.Contains(e.SignedCapabilities, "STARTTLS") || !e.ProofValid {
		t.Errorf("evidence = %+v; want STARTTLS signed, not offered", e)
	}
	if res[0].TLS != nil {
		t.Errorf("TLS = %+v; want none: STARTTLS was not offered", res[0].TLS)
	}
}

func TestFakeRefMTAOpen(t *testing.T) {
	res := runRound(t, fakeRefMTA(t, "127.0.0.1", newKey(t), nil))
	check(t, res, want{verdict.Open, ""}, want{verdict.Open, ""})
}

func TestForeignBanner(t *testing.T) {
	key := newKey(t)
	tg := fakeRefMTA(t, "127.0.0.1", key, nil)
	relay := &fakeMTA{cert: certificate(t, newKey(t), "relay.isp.example")}
	tg.Ports = []Port{{Number: listen(t, "127.0.0.1", relay.handle).port}}
	res := runRound(t, tg)
	check(t, res, want{verdict.Intercepted, FailureProofMissing})
	r := res[0]
	if r.Evidence.Banner != "220 fake.test ESMTP" || r.Evidence.ProofValid {
		t.Errorf("evidence = %+v; want the foreign banner kept", r.Evidence)
	}
	// STARTTLS went ahead, so the relay's certificate is evidence too.
	if r.TLS == nil || r.TLS.PinValid || !strings.Contains(r.TLS.Subject, "relay.isp.example") {
		t.Errorf("TLS = %+v; want the relay's certificate", r.TLS)
	}
}

func TestRoundInvalidTarget(t *testing.T) {
	good := Target{RefMTA: "x", Key: newKey(t).Public().(ed25519.PublicKey), Addr: netip.MustParseAddr("192.0.2.1"),
		Ports: StandardPorts(25), ControlPort: 443}
	for _, tc := range []struct {
		name string
		edit func(*Target)
	}{
		{"no address", func(t *Target) { t.Addr = netip.Addr{} }},
		{"no key", func(t *Target) { t.Key = nil }},
		{"no ports", func(t *Target) { t.Ports = nil }},
		{"port 0", func(t *Target) { t.Ports = StandardPorts(0) }},
		{"no control port", func(t *Target) { t.ControlPort = 0 }},
	} {
		tg := good
		tc.edit(&tg)
		if _, err := Round(context.Background(), Config{}, []Target{tg}); err == nil {
			t.Errorf("Round(%s) succeeded; want an error", tc.name)
		}
	}
}

func TestRoundCanceled(t *testing.T) {
	// A silent server: without cancellation each probe would take the
	// whole timeout.
	silent := listen(t, "127.0.0.1", drain)
	tg := Target{RefMTA: "x", Key: newKey(t).Public().(ed25519.PublicKey), Addr: silent.addr,
		Ports: []Port{{Number: silent.port}}, ControlPort: silent.port}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Round(ctx, Config{Timeout: time.Minute}, []Target{tg})
	if err == nil {
		t.Errorf("Round after cancel succeeded; want an error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("canceled Round took %v", d)
	}
}

func TestProgress(t *testing.T) {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	var events []Event
	_, err := Round(context.Background(), Config{Timeout: testTimeout, Progress: func(e Event) { events = append(events, e) }},
		[]Target{refTarget(s)})
	if err != nil {
		t.Fatal(err)
	}
	var started, done, control int
	for _, e := range events {
		if e.Done {
			done++
		} else {
			started++
		}
		if e.Control {
			control++
		}
	}
	if started != 4 || done != 4 || control != 2 || !events[0].Control {
		t.Errorf("events = %+v; want 4 starts, 4 ends, the control probe first", events)
	}
}

func TestStandardPorts(t *testing.T) {
	got := StandardPorts(25, 587, 465)
	want := []Port{{Number: 25}, {Number: 587}, {Number: 465, ImplicitTLS: true}}
	if !slices.Equal(got, want) {
		t.Errorf("StandardPorts(25, 587, 465) = %v; want %v", got, want)
	}
}

func TestFamilyOf(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want Family
	}{{"192.0.2.1", IPv4}, {"::ffff:192.0.2.1", IPv4}, {"2001:db8::1", IPv6}} {
		if got := FamilyOf(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("FamilyOf(%q) = %v; want %v", tc.addr, got, tc.want)
		}
	}
}
