package dataset_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// TestFaultyRefMTAIsNotChargedToNetworks: two reference MTAs in different
// ASNs, one behind an upstream that drops inbound port 25. An open network
// stays OPEN, the faulty reference MTA's results are charged to it and it
// is flagged; a real OP25B network, on which both agree, is charged
// nothing; a rebuild reaches the same state.
func TestFaultyRefMTAIsNotChargedToNetworks(t *testing.T) {
	const openASN, op25bASN = 64510, 64511
	ctx := context.Background()
	w := &datasettest.World{}
	w.TwoRefMTAs(openASN, 4, 1)
	w.TwoRefMTAs(op25bASN, 4, 2)
	s, d := datasettest.Open(t, w)

	check := func(when string) (*pb.ListASNsResponse, []*pb.RefMTAStats) {
		asns, err := d.ListASNs(ctx, &pb.ListASNsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		rounds := int64(4 * 7 * 2) // per ASN: agents x days x rounds
		for _, a := range asns.GetAsns() {
			var p25 *pb.PortStats
			for _, p := range a.GetPorts() {
				if p.GetPort() == 25 {
					p25 = p
				}
			}
			switch a.GetAsn() {
			case openASN:
				if a.GetPolicyClass() != pb.PolicyClass_POLICY_CLASS_OPEN {
					t.Errorf("%s: AS%d is %v; want OPEN (the blocks were the reference MTA's)", when, openASN, a.GetPolicyClass())
				}
				if p25.GetRefmtaCharged() != uint64(rounds) || p25.GetResults() != uint64(rounds) {
					t.Errorf("%s: AS%d port 25: %d results counted, %d charged; want %d and %d", when, openASN, p25.GetResults(), p25.GetRefmtaCharged(), rounds, rounds)
				}
			case op25bASN:
				if a.GetPolicyClass() != pb.PolicyClass_POLICY_CLASS_OP25B {
					t.Errorf("%s: AS%d is %v; want OP25B", when, op25bASN, a.GetPolicyClass())
				}
				if p25.GetRefmtaCharged() != 0 || p25.GetResults() != uint64(2*rounds) {
					t.Errorf("%s: AS%d port 25: %d results counted, %d charged; want %d and 0", when, op25bASN, p25.GetResults(), p25.GetRefmtaCharged(), 2*rounds)
				}
			}
		}
		var stored, charged, chargedFaulty int64
		if err := s.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE refmta_charged),
			count(*) FILTER (WHERE refmta_charged AND refmta_id = $1 AND port = 25 AND verdict = 2) FROM results`,
			datasettest.RefMTAFaulty).Scan(&stored, &charged, &chargedFaulty); err != nil {
			t.Fatal(err)
		}
		if charged != rounds || chargedFaulty != rounds {
			t.Errorf("%s: %d of %d results charged, %d of them the faulty reference MTA's port 25 blocks; want %d, all of them", when, charged, stored, chargedFaulty, rounds)
		}
		info, err := d.GetInfo(ctx, &pb.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		flagged := map[string]bool{}
		for _, r := range info.GetReferenceMtas() {
			if r.GetFlagged() {
				flagged[fmt.Sprintf("%s %s %d", r.GetRefmtaId(), dataset.FamilyName(r.GetFamily()), r.GetPort())] = true
			}
			if r.GetRefmtaId() == datasettest.RefMTAFaulty && r.GetPort() == 25 {
				if r.GetCharged() != uint64(rounds) || r.GetResults() != uint64(2*rounds) || r.GetBlocked().GetShare() != 1 ||
					r.GetOthersBlocked().GetShare() != 0.5 || !r.GetFlagged() {
					t.Errorf("%s: faulty reference MTA, port 25: %v; want %d results, %d charged, blocked 1 against 0.5, flagged", when, r, 2*rounds, rounds)
				}
			}
		}
		if len(flagged) != 1 {
			t.Errorf("%s: flagged %v; want only the faulty reference MTA's IPv4 port 25", when, flagged)
		}
		if len(info.GetReferenceMtas()) != 6 || info.GetReferenceMtaWindow().GetEnd().AsTime().Sub(info.GetReferenceMtaWindow().GetStart().AsTime()) != 7*dataset.Day {
			t.Errorf("%s: %d reference MTA figures over %v; want 2 reference MTAs x 3 ports over 7 days", when, len(info.GetReferenceMtas()), info.GetReferenceMtaWindow())
		}
		return asns, info.GetReferenceMtas()
	}
	asns, refmtas := check("incremental")
	var exported, marked int
	err := d.ExportResults(ctx, &pb.ExportResultsRequest{Range: &pb.TimeRange{
		Start: timestamppb.New(datasettest.Now.Add(-7 * dataset.Day)), End: timestamppb.New(datasettest.Now.Add(dataset.Day))}},
		func(rs []*pb.PublicResult) error {
			for _, r := range rs {
				exported++
				if r.GetRefmtaCharged() {
					marked++
					if r.GetRefmtaId() != datasettest.RefMTAFaulty || r.GetAsn() != openASN {
						t.Errorf("exported as charged: %v; want only the faulty reference MTA's results from AS%d", r, openASN)
					}
				}
			}
			return nil
		})
	if err != nil || marked != 4*7*2 || exported != len(w.Results()) {
		t.Errorf("export: %d rows, %d marked charged, %v; want %d rows, %d marked", exported, marked, err, len(w.Results()), 4*7*2)
	}
	if _, err := d.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	asns2, refmtas2 := check("rebuilt")
	if !proto.Equal(asns, asns2) || len(refmtas) != len(refmtas2) {
		t.Errorf("the rebuild publishes other ASN figures:\n%v\n%v", asns, asns2)
	}
	for i := range refmtas {
		if !proto.Equal(refmtas[i], refmtas2[i]) {
			t.Errorf("the rebuild changes reference MTA figures: %v; was %v", refmtas2[i], refmtas[i])
		}
	}
}

// TestRefMTAFlagNeedsEvidence: below the minimum of results no reference
// MTA is flagged, however far apart the shares.
func TestRefMTAFlagNeedsEvidence(t *testing.T) {
	w := &datasettest.World{}
	w.TwoRefMTAs(64510, 1, 1) // 14 rounds: below the default 30
	s, _ := datasettest.Open(t, w)
	for _, tc := range []struct {
		min  int
		want bool
	}{{0, false}, {14, true}, {15, false}} {
		d, err := dataset.New(s.Pool, dataset.Config{RefMTAMinResults: tc.min}, datasettest.Clock)
		if err != nil {
			t.Fatal(err)
		}
		rs, _, err := d.RefMTAs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, r := range rs {
			got = got || r.GetFlagged()
		}
		if got != tc.want {
			t.Errorf("with at least %d results: flagged %v; want %v", tc.min, got, tc.want)
		}
	}
}
