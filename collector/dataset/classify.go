package dataset

import (
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// conclusive are the verdicts that count towards shares, in enum order; the
// p[i] of a portRow counts prefixes whose majority verdict is conclusive[i].
var conclusive = [6]pb.Verdict{
	pb.Verdict_VERDICT_OPEN, pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_BLOCKED_RESET,
	pb.Verdict_VERDICT_BLOCKED_UNREACHABLE, pb.Verdict_VERDICT_INTERCEPTED, pb.Verdict_VERDICT_TAMPERED,
}

// portRow is one port of one ASN and family in one span (a day or a
// window); port 0 carries the ASN-level distinct agents and prefixes.
type portRow struct {
	asn      uint32
	family   int16 // 4 or 6
	port     uint32
	agents   int64
	prefixes int64
	results  int64
	charged  int64 // results charged to a reference MTA's side, not in results
	p        [6]int64
}

func (r *portRow) open() int64        { return r.p[0] }
func (r *portRow) blocked() int64     { return r.p[1] + r.p[2] + r.p[3] }
func (r *portRow) intercepted() int64 { return r.p[4] + r.p[5] }

// classify returns the policy class of one ASN and family from its ports
// in one span, and the share of port 25's prefixes that are blocked (the
// peer benchmark's ranking key).
func classify(ports map[uint32]*portRow, cfg Config) (pb.PolicyClass, float64) {
	enough := func(r *portRow) bool { return r != nil && r.prefixes >= int64(cfg.MinPrefixes) }
	dominant := func(k int64, r *portRow) bool { return float64(k) >= cfg.Dominant*float64(r.prefixes) }
	smtp := ports[25]
	var blocked25 float64
	if smtp != nil && smtp.prefixes > 0 {
		blocked25 = float64(smtp.blocked()) / float64(smtp.prefixes)
	}
	switch {
	case !enough(smtp):
		return pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA, blocked25
	case dominant(smtp.intercepted(), smtp):
		return pb.PolicyClass_POLICY_CLASS_INTERCEPT, blocked25
	case dominant(smtp.open(), smtp):
		return pb.PolicyClass_POLICY_CLASS_OPEN, blocked25
	case !dominant(smtp.blocked(), smtp):
		return pb.PolicyClass_POLICY_CLASS_MIXED, blocked25
	}
	// Port 25 is blocked: what about submission?
	subBlocked, subMissing := 0, 0
	for _, port := range []uint32{587, 465} {
		r := ports[port]
		switch {
		case !enough(r):
			subMissing++
		case dominant(r.open(), r):
			return pb.PolicyClass_POLICY_CLASS_OP25B, blocked25
		case dominant(r.blocked(), r):
			subBlocked++
		}
	}
	switch {
	case subBlocked == 2:
		return pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED, blocked25
	case subMissing > 0:
		return pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA, blocked25
	}
	return pb.PolicyClass_POLICY_CLASS_MIXED, blocked25
}
