// Package shares computes verdict shares of prefixes with their Wilson
// score intervals, the one way the collector, the web page, the CLI and the
// Grafana plugin state how sure a share is (docs/dataset.md).
package shares

import (
	"math"
	"slices"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// z is the 97.5th percentile of the standard normal: 95% intervals.
const z = 1.959963984540054

// Wilson returns the Wilson score interval at 95% confidence of the share
// k/n. It is the interval of choice for shares of small samples: unlike the
// normal approximation it stays inside [0, 1] and is not degenerate at 0 or
// n. For n = 0 it is the whole [0, 1].
func Wilson(k, n float64) (low, high float64) {
	if n <= 0 {
		return 0, 1
	}
	p := k / n
	den := 1 + z*z/n
	center := (p + z*z/(2*n)) / den
	half := z / den * math.Sqrt(p*(1-p)/n+z*z/(4*n*n))
	return math.Max(0, center-half), math.Min(1, center+half)
}

// Blocked are the verdicts of a blocked port.
var Blocked = []pb.Verdict{pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_BLOCKED_RESET, pb.Verdict_VERDICT_BLOCKED_UNREACHABLE}

// Share is the share of a port's prefixes in a group of verdicts.
type Share struct {
	Value, Low, High float64
	// OK is false when the port has no prefix with a conclusive verdict
	// (or was not measured): there is no share to show.
	OK bool
}

// Of returns the share of p's prefixes whose verdict is one of verdicts,
// with its Wilson interval over the prefixes. Each prefix carries one
// verdict, so the counts of a group add up.
func Of(p *pb.PortStats, verdicts ...pb.Verdict) Share {
	n := float64(p.GetPrefixes()) // 0 for a nil p
	if n == 0 {
		return Share{}
	}
	var k float64
	for _, s := range p.GetShares() {
		if slices.Contains(verdicts, s.GetVerdict()) {
			k += s.GetCount()
		}
	}
	low, high := Wilson(k, n)
	return Share{Value: k / n, Low: low, High: high, OK: true}
}
