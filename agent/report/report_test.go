package report

import (
	"bytes"
	"crypto/tls"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	t0     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v4     = netip.MustParseAddr("192.0.2.25")
	v6     = netip.MustParseAddr("2001:db8::25")
	egress = netip.MustParseAddr("198.51.100.7")
	nonce  = []byte("0123456789abcdef")
)

// fixture is a round with one reached and one unreachable control probe.
func fixture() Round {
	ctl4 := probe.Control{Reached: true, ObservedSource: egress, ServedPorts: []uint16{25, 587, 465}, RTT: 23400 * time.Microsecond, Port: 443}
	ctl6 := probe.Control{Failure: probe.FailureNetworkUnreachable, Port: 443}
	open := func(port uint16) probe.Result {
		return probe.Result{ID: "0195539c-4c00-7000-8000-00000000000" + string(rune('0'+port%10)), RefMTA: "refmta-tokyo-1", Addr: v4, Port: port, Family: probe.IPv4,
			Verdict: verdict.Open, Detail: "reached the reference MTA unmodified; its signed statement verifies", Started: t0,
			Timings: probe.Timings{Connect: 23 * time.Millisecond, Banner: 24 * time.Millisecond, EHLO: 23500 * time.Microsecond,
				TLSHandshake: 48 * time.Millisecond, Total: 190 * time.Millisecond},
			Evidence: probe.Evidence{Banner: "220 mx.example ESMTP", Capabilities: []string{"8BITMIME", "STARTTLS"}, Statement: "tok.sig",
				ProofValid: true, ObservedSource: egress, SignedCapabilities: []string{"8BITMIME", "STARTTLS"}, STARTTLSOffered: true},
			TLS:   &probe.TLS{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, CertificateSHA256: "ab12", PinValid: true, Subject: "CN=mx.example"},
			Nonce: nonce, Control: ctl4}
	}
	return Round{ID: "0195539c-4c00-7000-8000-000000000000", AgentVersion: "v0.1.0", Started: t0, Finished: t0.Add(11 * time.Second),
		Results: []probe.Result{
			{ID: "0195539c-4c00-7000-8000-000000000025", RefMTA: "refmta-tokyo-1", Addr: v4, Port: 25, Family: probe.IPv4,
				Verdict: verdict.BlockedTimeout, Failure: probe.FailureTimeout,
				Detail:  "the connection attempt got no answer within 10s while the control port of the same host answered (confirmed by 2 of 2 attempts)",
				Started: t0, Phase: probe.PhaseConnect, Timings: probe.Timings{Total: 10 * time.Second}, Nonce: nonce, Control: ctl4,
				Attempts: []probe.Attempt{blockedAttempt(1), blockedAttempt(probe.ConfirmDials)}, Decided: 1},
			open(587),
			open(465),
			{ID: "0195539c-4c00-7000-8000-000000000625", RefMTA: "refmta-tokyo-1", Addr: v6, Port: 25, Family: probe.IPv6,
				Verdict: verdict.Inconclusive, Failure: probe.FailureNetworkUnreachable,
				Detail:  "the network reported no route to the host's network, and the control port did not answer either, so blocking cannot be told from lost connectivity",
				Started: t0, Timings: probe.Timings{Total: time.Millisecond}, Nonce: nonce, Control: ctl6},
		}}
}

func blockedAttempt(dials int) probe.Attempt {
	return probe.Attempt{Verdict: verdict.BlockedTimeout, Failure: probe.FailureTimeout, Phase: probe.PhaseConnect, Started: t0,
		Detail:   "the connection attempt got no answer within 10s while the control port of the same host answered",
		Deadline: 10 * time.Second, Dials: dials, Timings: probe.Timings{Total: 10 * time.Second}, Nonce: nonce}
}

func TestVerdictNumbering(t *testing.T) {
	for _, v := range verdict.All {
		if got, want := op25bv1.Verdict(v).String(), "VERDICT_"+v.String(); got != want {
			t.Errorf("op25bv1.Verdict(%v) = %s; want %s", v, got, want)
		}
	}
}

func TestProbeResult(t *testing.T) {
	r := fixture().Results[1]
	got := ProbeResult(r, "round-1", "v0.1.0")
	want := &op25bv1.ProbeResult{
		ResultId: r.ID, RefmtaId: "refmta-tokyo-1", Port: 587, Family: op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4,
		Verdict: op25bv1.Verdict_VERDICT_OPEN, Detail: r.Detail, StartedAt: timestamppb.New(t0),
		Timings: &op25bv1.Timings{Connect: durationpb.New(23 * time.Millisecond), Banner: durationpb.New(24 * time.Millisecond),
			Ehlo: durationpb.New(23500 * time.Microsecond), TlsHandshake: durationpb.New(48 * time.Millisecond), Total: durationpb.New(190 * time.Millisecond)},
		Evidence: &op25bv1.Evidence{Banner: "220 mx.example ESMTP", EhloCapabilities: []string{"8BITMIME", "STARTTLS"}, Statement: "tok.sig",
			ProofValid: true, ObservedSource: "198.51.100.7", SignedCapabilities: []string{"8BITMIME", "STARTTLS"}, StarttlsOffered: true},
		Tls: &op25bv1.TLSDetails{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", PeerCertificateSha256: "ab12", PinValid: true,
			PeerCertificateSubject: "CN=mx.example"},
		Nonce: nonce, AgentVersion: "v0.1.0", TargetAddress: "192.0.2.25", RoundId: "round-1",
		Control: &op25bv1.ControlObservation{Reached: true, ObservedSource: "198.51.100.7", ServedPorts: []uint32{25, 587, 465},
			Rtt: durationpb.New(23400 * time.Microsecond), Port: 443},
	}
	if !proto.Equal(got, want) {
		t.Errorf("ProbeResult() =\n%v\nwant\n%v", got, want)
	}

	// Phases that did not happen stay unset.
	blocked := ProbeResult(fixture().Results[0], "round-1", "v0.1.0")
	if tm := blocked.Timings; tm.Connect != nil || tm.Banner != nil || tm.Total == nil || blocked.Tls != nil || blocked.Evidence.ObservedSource != "" {
		t.Errorf("ProbeResult(blocked) = %v; want only total set, no TLS, no observed source", blocked)
	}
	// Every attempt travels, with what it alone showed.
	wantAttempt := func(dials uint32) *op25bv1.ProbeAttempt {
		return &op25bv1.ProbeAttempt{Verdict: op25bv1.Verdict_VERDICT_BLOCKED_TIMEOUT, Failure: "timeout", Phase: "connect",
			Detail: blockedAttempt(1).Detail, StartedAt: timestamppb.New(t0), Timings: &op25bv1.Timings{Total: durationpb.New(10 * time.Second)},
			Evidence: &op25bv1.Evidence{}, Nonce: nonce, Deadline: durationpb.New(10 * time.Second), Dials: dials}
	}
	if len(blocked.Attempts) != 2 || !proto.Equal(blocked.Attempts[0], wantAttempt(1)) || !proto.Equal(blocked.Attempts[1], wantAttempt(probe.ConfirmDials)) ||
		blocked.Phase != "connect" {
		t.Errorf("ProbeResult(blocked) attempts = %v, phase %q; want both attempts, phase connect", blocked.Attempts, blocked.Phase)
	}
}

func TestTLSDetails(t *testing.T) {
	r := fixture().Results[1]
	r.TLS = &probe.TLS{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, CertificateSHA256: "cd34",
		Subject: "CN=refmta.example", Issuer: "CN=ISP Inspection CA", SANs: []string{"refmta.example"},
		NotBefore: t0, NotAfter: t0.Add(24 * time.Hour), ChainSHA256: []string{"cd34", "ef56"}}
	got := ProbeResult(r, "round-1", "v0.1.0").GetTls()
	want := &op25bv1.TLSDetails{Version: "TLS 1.2", CipherSuite: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", PeerCertificateSha256: "cd34",
		PeerCertificateSubject: "CN=refmta.example", PeerCertificateIssuer: "CN=ISP Inspection CA", PeerCertificateSans: []string{"refmta.example"},
		PeerCertificateNotBefore: timestamppb.New(t0), PeerCertificateNotAfter: timestamppb.New(t0.Add(24 * time.Hour)),
		PeerChainSha256: []string{"cd34", "ef56"}}
	if !proto.Equal(got, want) {
		t.Errorf("TLS details = %v; want %v", got, want)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	var got op25bv1.ProbeReport
	if err := protojson.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("output does not parse back: %v\n%s", err, b.String())
	}
	if want := ProbeReport(fixture()); !proto.Equal(&got, want) {
		t.Errorf("WriteJSON parses back as\n%v\nwant\n%v", &got, want)
	}
	for _, re := range []string{`"verdict":\s*"VERDICT_BLOCKED_TIMEOUT"`, `"family":\s*"ADDRESS_FAMILY_IPV6"`, "\n  \"roundId\""} {
		if !regexp.MustCompile(re).Match(b.Bytes()) {
			t.Errorf("WriteJSON output does not match %q (enum names, indented):\n%s", re, b.String())
		}
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	golden(t, "table.golden", b.Bytes())
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := Progress(&b, 3)
	p(probe.Event{RefMTA: "r", Addr: v4, Port: 443, Control: true})
	p(probe.Event{RefMTA: "r", Addr: v4, Port: 443, Control: true, Done: true})
	p(probe.Event{RefMTA: "r", Addr: v4, Port: 25})
	p(probe.Event{RefMTA: "r", Addr: v4, Port: 25, Attempt: 2})
	p(probe.Event{RefMTA: "r", Addr: v4, Port: 25, Done: true, Verdict: verdict.BlockedReset, Failure: probe.FailureConnectionRefused, Attempt: 2})
	p(probe.Event{RefMTA: "r", Addr: v6, Port: 443, Control: true, Done: true, Failure: probe.FailureTimeout})
	golden(t, "progress.golden", b.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
