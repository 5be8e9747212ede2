package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/internal/uuidv7"
)

// policy is what an ASN does to outbound SMTP in one family.
type policy uint8

const (
	polOP25B      policy = iota // 25 blocked, submission open
	polOpen                     // everything open
	polIntercept                // 25 answered by the ISP's relay
	polAllBlocked               // 25, 587 and 465 blocked
	polMixed                    // 25 open in some prefixes, blocked in others
)

// Verdict numbers (op25b.v1.Verdict).
const (
	vOpen        = 1
	vTimeout     = 2
	vReset       = 3
	vUnreachable = 4
	vIntercepted = 5
	vTampered    = 6
	vInconc      = 7
)

var ports = [3]uint16{25, 587, 465}

// countries are 60 ISO 3166-1 codes, the first ones holding the most ASNs.
var countries = []string{
	"JP", "US", "DE", "BR", "IN", "GB", "FR", "RU", "ID", "IT", "ES", "NL", "PL", "CA", "AU",
	"KR", "MX", "TR", "AR", "UA", "VN", "TH", "ZA", "SE", "CH", "AT", "BE", "CZ", "RO", "IR",
	"PH", "MY", "CO", "CL", "PE", "EG", "NG", "KE", "PK", "BD", "SG", "HK", "TW", "NZ", "NO",
	"DK", "FI", "IE", "PT", "GR", "HU", "BG", "RS", "HR", "SK", "IL", "SA", "AE", "LT", "CN",
}

type asnInfo struct {
	asn     uint32
	name    string
	country string
	policy  [2]policy // IPv4, IPv6
	// changeDay is the day index from which IPv4 follows changeTo (-1: never).
	changeDay int
	changeTo  policy
	blocked   uint8 // how this ASN blocks: timeout, reset or unreachable
	intercept uint8 // intercepted or tampered
	banner    string
	prefixes4 []netip.Prefix
	prefixes6 []netip.Prefix
	agents    []int
}

type agentInfo struct {
	id       string
	asn      *asnInfo
	p4, p6   int // prefix index in the ASN (p6 < 0: IPv4 only)
	egress4  netip.Addr
	egress6  netip.Addr
	uptime   float64 // share of the expected rounds this agent runs
	families []uint8
}

func (a *agentInfo) weight() float64 { return float64(3*len(a.families)) * a.uptime }

// world is a deterministic synthetic population of networks and agents.
// IPv4 documentation and benchmark ranges hold too few /24s for it (3 +
// 512), so IPv4 prefixes come from 240.0.0.0/4 (reserved, never routed);
// IPv6 prefixes are /48s of 2001:db8::/32.
type world struct {
	rng    *rand.Rand
	start  time.Time // the first day
	now    time.Time // the load ends here; the refresh's hour follows
	days   int
	asns   []*asnInfo
	agents []*agentInfo
	weight float64 // sum of the agents' weights
	perWH  float64 // results per unit of weight per hour
	n      int64   // results in the load
}

func newWorld(seed uint64, results int64, nASNs, nAgents, days int, now time.Time) *world {
	w := &world{rng: rand.New(rand.NewPCG(seed, 0x6f70323562)), now: now, days: days, n: results}
	w.start = dataset.Today(now).Add(-time.Duration(days-1) * dataset.Day)
	r := w.rng

	// Agents per ASN: one each, the rest Zipf-like (exponent 0.8) over
	// ranks, so that a few ASNs have hundreds and most 1 to 5.
	counts := make([]int, nASNs)
	share := make([]float64, nASNs)
	var sum float64
	for i := range share {
		share[i] = math.Pow(float64(i+1), -0.8)
		sum += share[i]
	}
	left := nAgents - nASNs
	given := 0
	for i := range counts {
		counts[i] = 1
		if left > 0 {
			k := int(math.Floor(float64(left) * share[i] / sum * (0.7 + 0.6*r.Float64())))
			counts[i] += k
			given += k
		}
	}
	for i := 0; given < left; i = (i + 1) % nASNs { // what rounding left over
		counts[i]++
		given++
	}
	for given > left { // or took too much
		i := r.IntN(nASNs)
		if counts[i] > 1 {
			counts[i]--
			given--
		}
	}
	r.Shuffle(len(counts), func(i, j int) { counts[i], counts[j] = counts[j], counts[i] })

	// Countries: Zipf-like too.
	cw := make([]float64, len(countries))
	for i := range cw {
		cw[i] = 1 / float64(i+1)
	}
	next4, next6 := 0, 0
	for i := range nASNs {
		a := &asnInfo{asn: 4200000000 + uint32(i) + 1, changeDay: -1}
		a.name = fmt.Sprintf("Bench Network %d", i+1)
		a.country = countries[pick(r, cw)]
		a.policy[0] = policy(pick(r, []float64{40, 30, 10, 10, 10}))
		a.policy[1] = a.policy[0]
		if r.Float64() < 0.4 || a.policy[0] == polIntercept {
			a.policy[1] = polOpen // IPv6 is often left open
		}
		if r.Float64() < 0.05 && days >= 4 {
			a.changeDay = 1 + r.IntN(days-2)
			a.changeTo = polOP25B
			if a.policy[0] == polOP25B {
				a.changeTo = policy(1 + r.IntN(4))
			}
		}
		a.blocked = []uint8{vTimeout, vReset, vUnreachable}[pick(r, []float64{6, 3, 1})]
		a.intercept = vIntercepted
		if r.Float64() < 0.15 {
			a.intercept = vTampered
		}
		a.banner = fmt.Sprintf("banner: 220 relay%d.isp.example ESMTP ready for [address]", i+1)
		n := counts[i]
		n4 := max(1, int(math.Round(float64(n)*(0.4+0.5*r.Float64()))))
		for range n4 {
			a.prefixes4 = append(a.prefixes4, netip.PrefixFrom(netip.AddrFrom4([4]byte{240 | byte(next4>>16), byte(next4 >> 8), byte(next4), 0}), 24))
			next4++
		}
		farm := n >= 200 // the biggest networks host a probe farm in one /24
		for range n {
			ag := &agentInfo{asn: a, p4: r.IntN(n4), p6: -1, uptime: 0.3 + 0.7*r.Float64(), families: []uint8{4}}
			if farm && r.Float64() < 0.1 {
				ag.p4 = 0
			}
			var id [8]byte
			binary.BigEndian.PutUint64(id[:], r.Uint64())
			ag.id = "agent-" + hex.EncodeToString(id[:])
			b := a.prefixes4[ag.p4].Addr().As4()
			b[3] = byte(1 + r.IntN(254))
			ag.egress4 = netip.AddrFrom4(b)
			if r.Float64() < 0.25 {
				ag.families = append(ag.families, 6)
			}
			a.agents = append(a.agents, len(w.agents))
			w.agents = append(w.agents, ag)
		}
		var v6 []*agentInfo
		for _, k := range a.agents {
			if len(w.agents[k].families) == 2 {
				v6 = append(v6, w.agents[k])
			}
		}
		if len(v6) > 0 {
			n6 := max(1, int(math.Round(float64(len(v6))*(0.5+0.5*r.Float64()))))
			for range n6 {
				var b [16]byte
				copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8, byte(next6 >> 8), byte(next6)})
				a.prefixes6 = append(a.prefixes6, netip.PrefixFrom(netip.AddrFrom16(b), 48))
				next6++
			}
			for _, ag := range v6 {
				ag.p6 = r.IntN(n6)
				b := a.prefixes6[ag.p6].Addr().As16()
				binary.BigEndian.PutUint64(b[8:], r.Uint64())
				ag.egress6 = netip.AddrFrom16(b)
			}
		}
		w.asns = append(w.asns, a)
	}
	for _, ag := range w.agents {
		w.weight += ag.weight()
	}
	loadHours := w.now.Sub(w.start).Hours()
	w.perWH = float64(results) / (loadHours * w.weight)
	return w
}

// pick returns an index drawn with the given weights.
func pick(r *rand.Rand, weights []float64) int {
	var sum float64
	for _, x := range weights {
		sum += x
	}
	u := r.Float64() * sum
	for i, x := range weights {
		if u < x {
			return i
		}
		u -= x
	}
	return len(weights) - 1
}

func (w *world) prefixes() (v4, v6 int) {
	for _, a := range w.asns {
		v4 += len(a.prefixes4)
		v6 += len(a.prefixes6)
	}
	return v4, v6
}

// quota turns expected counts into whole ones that add up exactly: the
// running total is rounded, never each part.
type quota struct {
	cum   float64
	given int64
	limit int64
}

func (q *quota) take(expected float64) int64 {
	q.cum += expected
	k := min(int64(math.Round(q.cum)), q.limit) - q.given
	k = max(k, 0)
	q.given += k
	return k
}

// results generates every agent's results measured in [from, to), at the
// world's rate, in measurement order.
func (w *world) results(from, to time.Time, q *quota) []store.Result {
	r := w.rng
	hours := to.Sub(from).Hours()
	day := int(from.Sub(w.start) / dataset.Day)
	span := to.Sub(from) - 2*time.Second
	var out []store.Result
	for _, ag := range w.agents {
		k := q.take(w.perWH * ag.weight() * hours)
		for k > 0 {
			at := from.Add(time.Duration(r.Int64N(int64(span)))).Truncate(time.Millisecond)
			roundID := uuidv7.New(at)
			step := 0
			for _, fam := range ag.families {
				for _, port := range ports {
					if k == 0 {
						break
					}
					k--
					step++
					out = append(out, w.result(ag, day, fam, port, at.Add(time.Duration(step)*137*time.Millisecond), roundID))
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b store.Result) int { return a.MeasuredAt.Compare(b.MeasuredAt) })
	return out
}

var failures = map[uint8][2]string{
	vTimeout:     {"timeout", "the connection attempt got no answer within 10s"},
	vReset:       {"connection_refused", "the connection was refused"},
	vUnreachable: {"administratively_prohibited", "ICMP: communication administratively prohibited"},
	vIntercepted: {"proof_missing", "the server that answered gave no statement of the reference MTA"},
	vTampered:    {"starttls_stripped", "the EHLO reply lacked STARTTLS that the reference MTA offers"},
	vInconc:      {"deadline", "the round's deadline passed before the probe ended"},
}

// result is one probe of ag on day (an index from the first day).
func (w *world) result(ag *agentInfo, day int, fam uint8, port uint16, at time.Time, roundID string) store.Result {
	r := w.rng
	a := ag.asn
	pol := a.policy[0]
	prefix, egress, pi := a.prefixes4[ag.p4], ag.egress4, ag.p4
	if fam == 6 {
		pol = a.policy[1]
		prefix, egress, pi = a.prefixes6[ag.p6], ag.egress6, ag.p6
	} else if a.changeDay >= 0 && day >= a.changeDay {
		pol = a.changeTo
	}
	v := uint8(vOpen)
	switch {
	case pol == polAllBlocked, pol == polOP25B && port == 25, pol == polMixed && port == 25 && pi%2 == 1:
		v = a.blocked
	case pol == polIntercept && port == 25:
		v = a.intercept
	}
	switch u := r.Float64(); {
	case u < 0.03:
		v = vInconc
	case u < 0.05 && v == vOpen:
		v = vTimeout
	case u < 0.05:
		v = vOpen
	}
	var nonce [16]byte
	binary.LittleEndian.PutUint64(nonce[:8], r.Uint64())
	binary.LittleEndian.PutUint64(nonce[8:], r.Uint64())
	res := store.Result{
		ID: uuidv7.New(at), MeasuredAt: at, AgentID: ag.id, RefMTA: "refmta-bench", Port: port, Family: fam,
		Verdict: v, Failure: failures[v][0], Detail: failures[v][1], Nonce: nonce[:], RoundID: roundID,
		ScheduleVersion: "bench-1", AgentVersion: "0.1.0", Egress: egress, EgressSource: store.EgressControl,
		Prefix: prefix, ASN: a.asn, Evidence: []byte{},
	}
	if port == 25 && (v == vIntercepted || v == vTampered) {
		res.PublicEvidence = a.banner
	}
	return res
}

// resultColumns are the columns of results that the load writes, as
// store.InsertResults writes them.
var resultColumns = []string{"result_id", "measured_at", "agent_id", "refmta_id", "port", "family", "verdict",
	"failure", "detail", "nonce", "round_id", "schedule_version", "agent_version", "egress", "egress_source",
	"prefix", "asn", "asn_snapshot_id", "evidence", "public_evidence"}

// copySource streams results to pgx's CopyFrom.
type copySource struct {
	rs []store.Result
	i  int
}

func (s *copySource) Next() bool { s.i++; return s.i <= len(s.rs) }
func (s *copySource) Err() error { return nil }
func (s *copySource) Values() ([]any, error) {
	r := &s.rs[s.i-1]
	return []any{r.ID, r.MeasuredAt, r.AgentID, r.RefMTA, int32(r.Port), int16(r.Family), int16(r.Verdict),
		r.Failure, r.Detail, r.Nonce, r.RoundID, r.ScheduleVersion, r.AgentVersion, r.Egress,
		int16(r.EgressSource), r.Prefix, int64(r.ASN), nil, r.Evidence, r.PublicEvidence}, nil
}
