package ingest

import (
	"strings"
	"testing"

	"github.com/op25b/observatory/internal/smtpwire"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestRedactAddresses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"220 relay.isp.example ESMTP ready for 203.0.113.5", "220 relay.isp.example ESMTP ready for [address]"},
		{"hello 203.0.113.5.", "hello [address]."},
		{"from 203.0.113.5:41234 ok", "from [address] ok"},
		{"v6 2001:db8::1 and [2001:db8::2]", "v6 [address] and [[address]]"},
		{"fe80::1%eth0 link", "[address] link"},
		{"220 mx ESMTP Postfix 3.7.2 12:30:45 cafe", "220 mx ESMTP Postfix 3.7.2 12:30:45 cafe"},
		{"bad\r\nline\x00", "bad  line "},
	} {
		if got := RedactAddresses(tc.in); got != tc.want {
			t.Errorf("RedactAddresses(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestPublicEvidence(t *testing.T) {
	open := &op25bv1.ProbeResult{Verdict: op25bv1.Verdict_VERDICT_OPEN, Evidence: &op25bv1.Evidence{Banner: "220 ours"}}
	if got := publicEvidence(open); got != "" {
		t.Errorf("evidence of an OPEN result = %q; want none", got)
	}
	mitm := &op25bv1.ProbeResult{Verdict: op25bv1.Verdict_VERDICT_TAMPERED, Failure: "certificate_mismatch",
		Evidence: &op25bv1.Evidence{Banner: "220 relay ESMTP for 198.51.100.7"},
		Tls:      &op25bv1.TLSDetails{PeerCertificateSubject: "CN=mitm.isp.example"}}
	if got, want := publicEvidence(mitm), "banner: 220 relay ESMTP for [address]; certificate: CN=mitm.isp.example"; got != want {
		t.Errorf("publicEvidence = %q; want %q", got, want)
	}
	// An interceptor that copies our subject is named by its issuer; our
	// own banner, relayed, is no evidence.
	copied := &op25bv1.ProbeResult{Verdict: op25bv1.Verdict_VERDICT_TAMPERED, Failure: "certificate_mismatch",
		Evidence: &op25bv1.Evidence{Banner: "220 refmta.example ESMTP " + smtpwire.BannerMark + " reference MTA; no mail accepted"},
		Tls:      &op25bv1.TLSDetails{PeerCertificateSubject: "CN=refmta.example", PeerCertificateIssuer: "CN=ISP Inspection CA"}}
	if got, want := publicEvidence(copied), "certificate: CN=refmta.example issued by CN=ISP Inspection CA"; got != want {
		t.Errorf("publicEvidence = %q; want %q", got, want)
	}
	stripped := &op25bv1.ProbeResult{Verdict: op25bv1.Verdict_VERDICT_TAMPERED, Failure: "starttls_stripped",
		Evidence: &op25bv1.Evidence{Banner: copied.Evidence.Banner}}
	if got := publicEvidence(stripped); got != "starttls_stripped" {
		t.Errorf("publicEvidence(STARTTLS stripped) = %q; want the failure alone", got)
	}
	long := &op25bv1.ProbeResult{Verdict: op25bv1.Verdict_VERDICT_INTERCEPTED,
		Evidence: &op25bv1.Evidence{Banner: strings.Repeat("日本", 400)}}
	if got := publicEvidence(long); len(got) > maxEvidence || !strings.HasSuffix(got, "本") && !strings.HasSuffix(got, "日") {
		t.Errorf("long evidence: %d bytes, ends %q", len(got), got[len(got)-4:])
	}
}
