// Package datasettest seeds a real database with results that produce
// every policy class, a policy change, interception evidence and a probe
// farm, for the tests of the dataset's query layer and of its front ends
// (HTTP API, web page, gRPC).
package datasettest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/store"
	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/uuidv7"
)

// Now is the seeded world's current time; the seeded days are the 7 UTC
// days ending with it.
var Now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// Verdict numbers (op25b.v1.Verdict), kept short for the scenario tables.
const (
	open        = 1
	timeout     = 2
	reset       = 3
	intercepted = 5
	tampered    = 6
	inconc      = 7
)

// ASN is one seeded network and the class the test expects of it.
type ASN struct {
	ASN     uint32
	Name    string
	Country string
	// Class per family ("ipv4", "ipv6"), short names as dataset.ClassName.
	Class map[string]string
}

// ASNs are the seeded networks.
var ASNs = []ASN{
	{64500, "Open Networks", "US", map[string]string{"ipv4": "OPEN"}},
	{64501, "Blocking ISP", "JP", map[string]string{"ipv4": "OP25B", "ipv6": "OPEN"}},
	{64502, "Relay Telecom", "JP", map[string]string{"ipv4": "INTERCEPT"}},
	{64503, "Closed Corp", "DE", map[string]string{"ipv4": "ALL_SMTP_BLOCKED"}},
	{64504, "Patchwork Net", "DE", map[string]string{"ipv4": "MIXED"}},
	{64505, "Tiny Net", "US", map[string]string{"ipv4": "INSUFFICIENT_DATA"}},
	{64506, "Switching ISP", "JP", map[string]string{"ipv4": "OP25B"}},
}

// ChangeDay is the day AS64506 turned from OPEN to OP25B over IPv4.
var ChangeDay = time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)

// Banner is the evidence of AS64502's intercepting relay, as ingest
// publishes it (the address it named redacted).
const Banner = "banner: 220 relay.relaytelecom.example ESMTP ready for [address]"

// World builds the seeded results.
type World struct {
	rs      []store.Result
	n       int
	refmtas []string // to enroll
}

// The reference MTAs of TwoRefMTAs, each in its own network.
const (
	RefMTAGood                     = "refmta-good"
	RefMTAFaulty                   = "refmta-faulty"
	RefMTAGoodASN, RefMTAFaultyASN = 65001, 65002
)

// TwoRefMTAs adds, for n agents of asn (each in its own /24 under
// 198.30+k.0.0/16, k = asn mod 200), two rounds a day over the week that
// probe both reference MTAs: port 25 of RefMTAGood gives v25, port 25 of
// RefMTAFaulty is BLOCKED_TIMEOUT for everyone (its upstream drops inbound
// port 25), and 587 and 465 are OPEN on both.
func (w *World) TwoRefMTAs(asn uint32, n int, v25 uint8) {
	if len(w.refmtas) == 0 {
		w.refmtas = []string{RefMTAGood, RefMTAFaulty}
	}
	for a := range n {
		egress := netip.AddrFrom4([4]byte{198, byte(30 + asn%200), byte(a), 10})
		agent := fmt.Sprintf("agent-%d-%d", asn, a)
		for _, day := range days(0, 7) {
			for i := range 2 {
				w.n++
				at := day.Add(time.Duration(1+i)*time.Hour + time.Duration(w.n)*time.Millisecond)
				round := uuidv7.New(at)
				for _, ref := range []struct {
					id  string
					asn uint32
					v25 uint8
				}{{RefMTAGood, RefMTAGoodASN, v25}, {RefMTAFaulty, RefMTAFaultyASN, timeout}} {
					for _, pv := range [][2]int{{25, int(ref.v25)}, {587, open}, {465, open}} {
						w.n++
						t := at.Add(time.Duration(w.n) * time.Microsecond)
						w.rs = append(w.rs, store.Result{
							ID: uuidv7.New(t), MeasuredAt: t.Truncate(time.Microsecond), AgentID: agent, RefMTA: ref.id, RoundID: round,
							Port: uint16(pv[0]), Family: 4, Verdict: uint8(pv[1]), Egress: egress, EgressSource: store.EgressControl,
							Prefix: netip.PrefixFrom(egress, 24).Masked(), ASN: asn, Evidence: []byte{}, RefMTAASN: ref.asn,
						})
					}
				}
			}
		}
	}
}

// add adds, for each of days, one result per port of one agent in one
// prefix, with per-port verdicts, repeat times a day.
func (w *World) add(asn uint32, agent string, egress netip.Addr, days []time.Time, repeat int, v25, v587, v465 uint8, banner string) {
	family := uint8(4)
	bits := 24
	if egress.Is6() {
		family, bits = 6, 48
	}
	prefix := netip.PrefixFrom(egress, bits).Masked()
	for _, day := range days {
		for i := range repeat {
			for _, pv := range [][2]int{{25, int(v25)}, {587, int(v587)}, {465, int(v465)}} {
				w.n++
				at := day.Add(time.Duration(1+i)*time.Hour + time.Duration(w.n)*time.Millisecond)
				r := store.Result{
					ID: uuidv7.New(at), MeasuredAt: at, AgentID: agent, RefMTA: "refmta-test",
					Port: uint16(pv[0]), Family: family, Verdict: uint8(pv[1]), Egress: egress,
					EgressSource: store.EgressControl, Prefix: prefix, ASN: asn, Evidence: []byte{},
				}
				if pv[0] == 25 && (pv[1] == intercepted || pv[1] == tampered) {
					r.PublicEvidence = banner
				}
				w.rs = append(w.rs, r)
			}
		}
	}
}

// days returns the n UTC days ending with Now's, oldest first.
func days(from, n int) []time.Time {
	today := Now.Truncate(24 * time.Hour)
	var out []time.Time
	for i := from; i < from+n; i++ {
		out = append(out, today.AddDate(0, 0, i-6))
	}
	return out
}

// NewWorld builds the standard seeded world: 7 days of results from
// agents in the ASNs above.
func NewWorld() *World {
	w := &World{}
	week := days(0, 7)
	v4 := func(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
	for p := range byte(4) { // AS64500: open everywhere
		w.add(64500, fmt.Sprintf("agent-open-%d", p), v4(198, 18, p, 10), week, 2, open, open, open, "")
	}
	for p := range byte(5) { // AS64501: OP25B over IPv4, open over IPv6
		w.add(64501, fmt.Sprintf("agent-op25b-%d", p), v4(198, 19, p, 10), week, 2, reset, open, open, "")
	}
	for p := range byte(3) {
		w.add(64501, fmt.Sprintf("agent-op25b-%d", p), netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, p, 0, 1, 15: 1}), week, 2, open, open, open, "")
	}
	for p := range byte(3) { // AS64502: port 25 answered by a relay
		w.add(64502, fmt.Sprintf("agent-relay-%d", p), v4(198, 20, p, 10), week, 2, intercepted, open, open, Banner)
	}
	for p := range byte(3) { // AS64503: nothing gets out
		w.add(64503, fmt.Sprintf("agent-closed-%d", p), v4(198, 21, p, 10), week, 2, timeout, timeout, timeout, "")
	}
	for p := range byte(4) { // AS64504: half open, half blocked
		v := uint8(open)
		if p%2 == 1 {
			v = reset
		}
		w.add(64504, fmt.Sprintf("agent-mixed-%d", p), v4(198, 22, p, 10), week, 2, v, open, open, "")
	}
	w.add(64505, "agent-tiny-0", v4(198, 23, 0, 10), week, 2, reset, open, open, "") // AS64505: one prefix
	w.add(64505, "agent-tiny-0", v4(198, 23, 0, 10), week[:1], 1, inconc, inconc, inconc, "")
	for p := range byte(3) { // AS64506: open for 3 days, then OP25B
		a := fmt.Sprintf("agent-switch-%d", p)
		w.add(64506, a, v4(198, 24, p, 10), days(0, 3), 2, open, open, open, "")
		w.add(64506, a, v4(198, 24, p, 10), days(3, 4), 2, reset, open, open, "")
	}
	return w
}

// Farm adds n agents inside one /24 of asn, all with verdict v on every
// port, over the week.
func (w *World) Farm(asn uint32, n int, v uint8) {
	for i := range n {
		w.add(asn, fmt.Sprintf("agent-farm-%d", i), netip.AddrFrom4([4]byte{203, 0, 113, byte(i%250 + 1)}), days(0, 7), 1, v, v, v, "")
	}
}

// The prefixes of Pools, with the verdict on port 25 the per-prefix view
// must give each over the week (short names as dataset.VerdictName; "" for
// none).
var PoolPrefixes = []struct{ Prefix, Verdict25 string }{
	{"192.0.2.0/24", "OPEN"},               // static pool, never filtered
	{"198.51.100.0/24", "BLOCKED_TIMEOUT"}, // dynamic pool, filtered all week
	{"100.64.1.0/24", "BLOCKED_RESET"},     // filtered from ChangeDay on
	{"100.64.2.0/24", "OPEN"},              // one agent open, one blocked: a tie
	{"100.64.3.0/24", ""},                  // inconclusive results only
	{"2001:db8:77::/48", "OPEN"},           // IPv6 left open
}

// Pools adds an ISP halfway through its OP25B rollout, asn, whose
// prefixes PoolPrefixes lists: two agents in the static pool, one in the
// dynamic pool, one in a pool filtered from ChangeDay on (4 days of
// BLOCKED_RESET after 3 OPEN, so the week's majority is blocked), one
// open and one blocked agent in a fourth, one agent with inconclusive
// results only, and one agent over IPv6. 587 and 465 are open everywhere
// but in the inconclusive pool.
func (w *World) Pools(asn uint32) {
	v4 := func(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
	week := days(0, 7)
	w.add(asn, "agent-pool-static-0", v4(192, 0, 2, 25), week, 2, open, open, open, "")
	w.add(asn, "agent-pool-static-1", v4(192, 0, 2, 26), week, 2, open, open, open, "")
	w.add(asn, "agent-pool-dynamic-0", v4(198, 51, 100, 77), week, 2, timeout, open, open, "")
	w.add(asn, "agent-pool-switch-0", v4(100, 64, 1, 99), days(0, 3), 2, open, open, open, "")
	w.add(asn, "agent-pool-switch-0", v4(100, 64, 1, 99), days(3, 4), 2, reset, open, open, "")
	w.add(asn, "agent-pool-tie-0", v4(100, 64, 2, 40), week, 2, reset, open, open, "")
	w.add(asn, "agent-pool-tie-1", v4(100, 64, 2, 41), week, 2, open, open, open, "")
	w.add(asn, "agent-pool-dark-0", v4(100, 64, 3, 7), week[5:], 1, inconc, inconc, inconc, "")
	w.add(asn, "agent-pool-v6-0", netip.MustParseAddr("2001:db8:77:4:5:6:7:8"), week, 2, open, open, open, "")
}

// Addresses returns the distinct full source addresses of the world's
// results, which no public output may contain.
func (w *World) Addresses() []string {
	seen := map[netip.Addr]bool{}
	var out []string
	for _, r := range w.rs {
		if !seen[r.Egress] {
			seen[r.Egress] = true
			out = append(out, r.Egress.String())
		}
	}
	return out
}

// Results returns the world's results.
func (w *World) Results() []store.Result { return w.rs }

// Seed stores the world's results through the ingest path's store and the
// AS names, in batches as agents would upload them.
func (w *World) Seed(t testing.TB, s *store.Store) {
	t.Helper()
	if err := w.Insert(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// Insert is Seed for a program that serves tests without being one
// (collector/collectortest/cmd/op25b-fixture).
func (w *World) Insert(ctx context.Context, s *store.Store) error {
	var hs []store.ASHolder
	for _, a := range ASNs {
		hs = append(hs, store.ASHolder{ASN: a.ASN, Name: a.Name, Country: a.Country})
	}
	if err := s.UpsertASNames(ctx, hs); err != nil {
		return fmt.Errorf("seed AS names: %w", err)
	}
	if err := w.enrollRefMTAs(ctx, s); err != nil {
		return err
	}
	// Batches end with a round, as agents upload them.
	for i := 0; i < len(w.rs); {
		j := min(i+500, len(w.rs))
		for j < len(w.rs) && w.rs[j].RoundID != "" && w.rs[j].RoundID == w.rs[j-1].RoundID {
			j++
		}
		if _, err := s.InsertResults(ctx, w.rs[i:j]); err != nil {
			return fmt.Errorf("seed results: %w", err)
		}
		i = j
	}
	return nil
}

// enrollRefMTAs records the world's reference MTAs as enrolled
// principals, which the per-reference-MTA figures list.
func (w *World) enrollRefMTAs(ctx context.Context, s *store.Store) error {
	for _, id := range w.refmtas {
		sum := sha256.Sum256([]byte(id))
		if _, err := s.Pool.Exec(ctx, `INSERT INTO principals (principal_id, kind, public_key, credential_hash, label)
			VALUES ($1, 2, $2, $2, 'seeded') ON CONFLICT DO NOTHING`, id, sum[:]); err != nil {
			return fmt.Errorf("seed reference MTAs: %w", err)
		}
	}
	return nil
}

// Open returns a fresh database seeded with w, and its query layer on the
// seeded world's clock, refreshed. The caller's TestMain runs
// storetest.Main.
func Open(t testing.TB, w *World) (*store.Store, *dataset.Dataset) {
	t.Helper()
	s := storetest.New(t)
	w.Seed(t, s)
	d, err := dataset.New(s.Pool, dataset.Config{}, Clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return s, d
}

// Clock is the seeded world's clock: always Now.
func Clock() time.Time { return Now }
