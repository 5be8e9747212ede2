package ingest

import (
	"net/netip"
	"strings"
	"unicode"

	"github.com/op25b/observatory/internal/clip"
	"github.com/op25b/observatory/internal/smtpwire"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// maxEvidence bounds the published evidence of one result, bytes.
const maxEvidence = 512

// publicEvidence is what the dataset publishes of a result whose port 25
// was intercepted or tampered with: the foreign banner and the foreign
// certificate's subject and issuer (an interceptor may copy our subject,
// not our issuer). Our own banner, relayed by a tampering path, is no
// evidence of anything and is left out. A middlebox writes what it likes
// there, possibly the volunteer's address, so every address literal is
// redacted.
func publicEvidence(pr *op25bv1.ProbeResult) string {
	v := pr.GetVerdict()
	if v != op25bv1.Verdict_VERDICT_INTERCEPTED && v != op25bv1.Verdict_VERDICT_TAMPERED {
		return ""
	}
	var parts []string
	if b := pr.GetEvidence().GetBanner(); b != "" && !strings.Contains(b, smtpwire.BannerMark) {
		parts = append(parts, "banner: "+b)
	}
	if t := pr.GetTls(); t.GetPeerCertificateSubject() != "" && !t.GetPinValid() {
		cert := "certificate: " + t.GetPeerCertificateSubject()
		if is := t.GetPeerCertificateIssuer(); is != "" && is != t.GetPeerCertificateSubject() {
			cert += " issued by " + is
		}
		parts = append(parts, cert)
	}
	if len(parts) == 0 && pr.GetFailure() != "" {
		parts = append(parts, pr.GetFailure())
	}
	return clip.Text(RedactAddresses(strings.Join(parts, "; ")), maxEvidence)
}

// RedactAddresses replaces every IPv4 or IPv6 address literal in s with
// "[address]" and control characters with spaces.
func RedactAddresses(s string) string {
	var b strings.Builder
	isAddrRune := func(r rune) bool {
		return r < unicode.MaxASCII && (r == '.' || r == ':' || unicode.Is(unicode.ASCII_Hex_Digit, r))
	}
	for len(s) > 0 {
		i := strings.IndexFunc(s, isAddrRune)
		if i < 0 {
			i = len(s)
		}
		b.WriteString(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, s[:i]))
		s = s[i:]
		j := strings.IndexFunc(s, func(r rune) bool { return !isAddrRune(r) })
		if j < 0 {
			j = len(s)
		}
		tok := s[:j]
		// A token may end with sentence punctuation or a port ("1.2.3.4:25").
		core := strings.TrimRight(tok, ".:")
		if _, err := netip.ParseAddr(core); err == nil {
			b.WriteString("[address]" + tok[len(core):])
			if strings.HasPrefix(s[j:], "%") { // an IPv6 zone, such as %eth0
				j += strings.IndexFunc(s[j:]+" ", unicode.IsSpace)
			}
		} else if ap, err := netip.ParseAddrPort(core); err == nil && ap.Addr().Is4() {
			b.WriteString("[address]")
		} else {
			b.WriteString(tok)
		}
		s = s[j:]
	}
	return b.String()
}
