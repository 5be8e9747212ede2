package web

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/shares"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// shareView is a share with its Wilson 95% interval as the tables show it,
// "82% (71–90%)", with the geometry of its interval bar (0 to 100).
type shareView struct {
	Value    float64 // 0..1, for sorting
	Text     string  // "82%"
	Interval string  // "71–90%"
	Low, Pt  string  // x of the interval's start and of the point
	Width    string  // width of the interval
}

func newShare(share, low, high float64) *shareView {
	share, low, high = clamp01(share), clamp01(low), clamp01(high)
	if high < low {
		low, high = high, low
	}
	return &shareView{
		Value:    share,
		Text:     pct(share),
		Interval: fmt.Sprintf("%.0f–%s", math.Round(low*100), pct(high)),
		Low:      num(low * 100),
		Pt:       num(math.Max(0, share*100-1)),
		Width:    num(math.Max(0.5, (high-low)*100)),
	}
}

// shareOf is one verdict's share, or nil when the port has no such share.
func shareOf(p *pb.PortStats, v pb.Verdict) *shareView {
	for _, s := range p.GetShares() {
		if s.GetVerdict() == v {
			return newShare(s.GetShare(), s.GetWilsonLow(), s.GetWilsonHigh())
		}
	}
	return nil
}

// blockedShare is the share of p's prefixes whose verdict is one of the
// BLOCKED_* verdicts, with its Wilson interval, or nil when no prefix has a
// conclusive verdict.
func blockedShare(p *pb.PortStats) *shareView {
	b := shares.Of(p, shares.Blocked...)
	if !b.OK {
		return nil
	}
	return newShare(b.Value, b.Low, b.High)
}

// port returns the stats of port in ports, or nil.
func port(ports []*pb.PortStats, port uint32) *pb.PortStats {
	for _, p := range ports {
		if p.GetPort() == port {
			return p
		}
	}
	return nil
}

func clamp01(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return math.Min(1, math.Max(0, x))
}

// pct writes a share as a whole percentage: "82%".
func pct(x float64) string {
	return strconv.FormatFloat(math.Round(x*100), 'f', 0, 64) + "%"
}

// num writes an SVG coordinate.
func num(x float64) string {
	return strconv.FormatFloat(math.Round(x*100)/100, 'f', -1, 64)
}

// asnLabel writes an ASN as "AS64500".
func asnLabel(asn uint32) string { return "AS" + strconv.FormatUint(uint64(asn), 10) }

// familyLabel writes a family as people read it: "IPv4".
func familyLabel(f pb.AddressFamily) string {
	switch f {
	case pb.AddressFamily_ADDRESS_FAMILY_IPV4:
		return "IPv4"
	case pb.AddressFamily_ADDRESS_FAMILY_IPV6:
		return "IPv6"
	}
	return ""
}

// classView is a policy class as a badge: the short name, the CSS key and
// the message key of its description.
type classView struct {
	Name string // "OP25B", "ALL_SMTP_BLOCKED"
	Key  string // "op25b", "all-smtp-blocked": the badge's CSS class
	Rank int    // enum order, for sorting
}

func newClass(c pb.PolicyClass) classView {
	name := dataset.ClassName(c)
	if c == pb.PolicyClass_POLICY_CLASS_UNSPECIFIED {
		name = "INSUFFICIENT_DATA"
		c = pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA
	}
	return classView{Name: name, Key: classKey(name), Rank: int(c)}
}

// allClasses lists the policy classes in enum order.
func allClasses() []classView {
	var out []classView
	for _, name := range dataset.ClassNames() {
		c, _ := dataset.ParseClass(name)
		out = append(out, newClass(c))
	}
	return out
}

func classKey(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "-")) }

// Label is the badge text: the class name with spaces.
func (c classView) Label() string { return strings.ReplaceAll(c.Name, "_", " ") }

// DescKey is the message key of the class's one-line description.
func (c classView) DescKey() string { return "class." + c.Name }
