package dataset

import (
	"context"
	"fmt"
	"slices"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// GetPeers benchmarks an ASN against the other ASNs of its country in one
// family (IPv4 unless the request says otherwise): its rank by the share of
// prefixes whose port 25 is blocked, the ranking (the subject included, at
// its rank), and the gaps it could close.
func (d *Dataset) GetPeers(ctx context.Context, req *pb.GetPeersRequest) (*pb.GetPeersResponse, error) {
	if req.GetAsn() == 0 {
		return nil, invalid("asn is required")
	}
	family, err := familyDB(req.GetFamily())
	if err != nil {
		return nil, err
	}
	if family == 0 {
		family = 4
	}
	sp, err := d.span(ctx, req.GetWindow())
	if err != nil {
		return nil, err
	}
	own, err := d.states(ctx, sp, filter{asn: req.GetAsn()}, 0, true)
	if err != nil {
		return nil, err
	}
	var subject *state
	for i := range own {
		if own[i].family == family {
			subject = &own[i]
		}
	}
	if subject == nil {
		return nil, fmt.Errorf("%w: no measurements from AS%d over IPv%d in this window", ErrNotFound, req.GetAsn(), family)
	}
	resp := &pb.GetPeersResponse{Subject: subject.summary(sp), Gaps: gaps(own, d.cfg)}
	if subject.country == "" {
		return resp, nil // no country known: no peers to compare with
	}
	peers, err := d.states(ctx, sp, filter{family: family, country: subject.country}, d.cfg.MaxPageSize, true)
	if err != nil {
		return nil, err
	}
	// Rank the classified ASNs, most blocked first.
	slices.SortStableFunc(peers, func(a, b state) int {
		switch {
		case a.blocked25 > b.blocked25:
			return -1
		case a.blocked25 < b.blocked25:
			return 1
		}
		return int(a.asn) - int(b.asn)
	})
	for _, p := range peers {
		if pb.PolicyClass(p.class) == pb.PolicyClass_POLICY_CLASS_INSUFFICIENT_DATA && p.asn != subject.asn {
			continue
		}
		resp.PeerCount++
		if p.asn == subject.asn {
			resp.Rank = resp.PeerCount
		}
		resp.Peers = append(resp.Peers, p.summary(sp))
	}
	return resp, nil
}

// gaps lists what an ISP could act on, from its states in both families.
func gaps(own []state, cfg Config) []*pb.PeerGap {
	by := map[int16]*state{}
	for i := range own {
		by[own[i].family] = &own[i]
	}
	var out []*pb.PeerGap
	blocks := func(s *state) bool {
		c := pb.PolicyClass(s.class)
		return c == pb.PolicyClass_POLICY_CLASS_OP25B || c == pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED
	}
	if v4, v6 := by[4], by[6]; v4 != nil && v6 != nil && blocks(v4) && pb.PolicyClass(v6.class) == pb.PolicyClass_POLICY_CLASS_OPEN {
		out = append(out, &pb.PeerGap{Family: pb.AddressFamily_ADDRESS_FAMILY_IPV6, Kind: "ipv6_open_ipv4_blocked",
			Detail: "port 25 is blocked over IPv4 but open over IPv6: spam from infected hosts can leave over IPv6"})
	}
	for _, f := range []int16{4, 6} {
		s := by[f]
		if s == nil {
			continue
		}
		if pb.PolicyClass(s.class) == pb.PolicyClass_POLICY_CLASS_ALL_SMTP_BLOCKED {
			out = append(out, &pb.PeerGap{Family: familyPB(f), Kind: "submission_blocked",
				Detail: fmt.Sprintf("ports 587 and 465 are blocked over IPv%d as well as 25: customers cannot submit mail to providers outside the network", f)})
		}
		if r := s.ports[25]; r != nil && r.intercepted() > 0 {
			out = append(out, &pb.PeerGap{Family: familyPB(f), Kind: "intercepted",
				Detail: fmt.Sprintf("port 25 is intercepted or tampered with for %d of %d prefixes over IPv%d: a middlebox answers instead of the destination", r.intercepted(), r.prefixes, f)})
		}
	}
	return out
}
