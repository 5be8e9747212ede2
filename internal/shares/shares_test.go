package shares

import (
	"math"
	"testing"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

func TestWilsonKnownValues(t *testing.T) {
	// Reference values: Wilson (1927); Newcombe (1998), Table I; R's
	// binom::binom.wilson.
	for _, tc := range []struct {
		k, n      float64
		low, high float64
	}{
		{0, 10, 0, 0.2775},
		{8, 10, 0.4902, 0.9433},
		{5, 10, 0.2366, 0.7634},
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{1, 1, 0.2065, 1},
		{0, 20, 0, 0.1611},
	} {
		low, high := Wilson(tc.k, tc.n)
		if math.Abs(low-tc.low) > 5e-5 || math.Abs(high-tc.high) > 5e-5 {
			t.Errorf("Wilson(%v, %v) = [%.4f, %.4f]; want [%.4f, %.4f]", tc.k, tc.n, low, high, tc.low, tc.high)
		}
	}
	if low, high := Wilson(0, 0); low != 0 || high != 1 {
		t.Errorf("Wilson(0, 0) = [%v, %v]; want [0, 1]", low, high)
	}
}

func TestOf(t *testing.T) {
	p := &pb.PortStats{Prefixes: 10, Shares: []*pb.Share{
		{Verdict: pb.Verdict_VERDICT_OPEN, Count: 2},
		{Verdict: pb.Verdict_VERDICT_BLOCKED_TIMEOUT, Count: 5},
		{Verdict: pb.Verdict_VERDICT_BLOCKED_RESET, Count: 3},
	}}
	got := Of(p, Blocked...)
	low, high := Wilson(8, 10)
	if got != (Share{Value: 0.8, Low: low, High: high, OK: true}) {
		t.Errorf("Of(blocked) = %+v; want 8 of 10 with [%v, %v]", got, low, high)
	}
	if got := Of(nil, Blocked...); got.OK {
		t.Errorf("Of(nil) = %+v; want no share", got)
	}
}
