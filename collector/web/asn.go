package web

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// families are the address families in the order pages show them.
var families = []pb.AddressFamily{pb.AddressFamily_ADDRESS_FAMILY_IPV4, pb.AddressFamily_ADDRESS_FAMILY_IPV6}

// shownVerdicts are the verdicts a port table has columns for: the
// conclusive ones (INCONCLUSIVE results never enter a share).
var shownVerdicts = []pb.Verdict{
	pb.Verdict_VERDICT_OPEN,
	pb.Verdict_VERDICT_BLOCKED_TIMEOUT,
	pb.Verdict_VERDICT_BLOCKED_RESET,
	pb.Verdict_VERDICT_BLOCKED_UNREACHABLE,
	pb.Verdict_VERDICT_INTERCEPTED,
	pb.Verdict_VERDICT_TAMPERED,
}

// maxEvidence bounds the evidence shown; the export has the rest.
const maxEvidence = 50

type asnPage struct {
	base
	ASN      uint32
	Label    string
	Name     string
	Country  string
	Window   string
	Windows  []option
	Period   string // "2026-02-19 – 2026-03-20"
	Families []familyView
	Chart    *chart
	Classes  []classView // the chart's legend
	Changes  []changeView
	Peers    []peerView
	Gaps     []gapView
	Evidence []evidenceView
}

type familyView struct {
	Family   string // "IPv4"
	Class    classView
	Agents   uint64
	Prefixes uint64
	Verdicts []string // column heads: verdict names
	Ports    []portRow
}

type portRow struct {
	Port     uint32
	Agents   uint64
	Prefixes uint64
	Results  uint64
	Shares   []*shareView // one per column of Verdicts; nil: none
}

type changeView struct {
	Family string
	From   classView
	To     classView
	Date   string
	at     time.Time
}

type peerView struct {
	Family  string
	Rank    uint32
	Count   uint32
	Country string
	Rows    []peerRow
}

type peerRow struct {
	Label   string
	Name    string
	Class   classView
	Blocked *shareView
	Subject bool
	Href    string
}

type gapView struct {
	Family string
	Kind   string // message key suffix, or "" for a kind we do not know
	Raw    string // the kind as the query layer named it
	Detail string
}

type evidenceView struct {
	Family    string
	Port      uint32
	Verdict   string
	Text      string
	FirstSeen string
	LastSeen  string
	Results   uint64
	last      time.Time
}

// knownGaps are the gap kinds the catalogue has plain-language text for.
var knownGaps = []string{"ipv6_open_ipv4_blocked", "submission_blocked", "intercepted"}

func (s *server) asn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	asn, err := dataset.ParseASN(r.PathValue("asn"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	windowParam := strings.TrimSpace(r.URL.Query().Get("window"))
	window, err := dataset.ParseWindow(windowParam, s.now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.info(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all, err := s.q.GetASN(ctx, &pb.GetASNRequest{Asn: asn, Window: window})
	if errors.Is(err, dataset.ErrNotFound) || (err == nil && len(all.GetSummaries()) == 0) {
		s.asnNotFound(w, r, asn)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}

	p := &asnPage{base: s.base(w, r, "asn", info), ASN: asn, Label: asnLabel(asn), Window: windowParam}
	t := translator(p.Lang)
	p.Title = p.Label
	p.Windows = windowOptions(info, windowParam, t)
	p.Classes = allClasses()

	// Peers rank within a family: they are asked for per family.
	summaries := map[pb.AddressFamily]*pb.ASNSummary{}
	for _, sum := range all.GetSummaries() {
		summaries[sum.GetFamily()] = sum
		if p.Name == "" {
			p.Name, p.Country = sum.GetName(), sum.GetCountry()
		}
	}
	var span *pb.TimeRange
	timelines := map[pb.AddressFamily][]*pb.TimelinePoint{}
	for _, pt := range all.GetTimeline() {
		timelines[pt.GetFamily()] = append(timelines[pt.GetFamily()], pt)
	}
	changes := all.GetChanges()
	evidence := all.GetEvidenceItems()
	for _, f := range families {
		sum, ok := summaries[f]
		if !ok {
			continue
		}
		if span == nil {
			span = sum.GetWindow()
		}
		p.Families = append(p.Families, newFamilyView(sum))

		peers, err := s.q.GetPeers(ctx, &pb.GetPeersRequest{Asn: asn, Family: f, Window: window})
		switch {
		case errors.Is(err, dataset.ErrNotFound), errors.Is(err, dataset.ErrInvalid):
			// No peer benchmark for this family: the section says so.
		case err != nil:
			s.fail(w, r, err)
			return
		default:
			p.addPeers(f, asn, peers, windowParam)
		}
	}
	if span == nil {
		span = window
	}
	if span == nil {
		span = dataset.Rolling(int(max(1, info.GetDefaultWindowDays())), s.now())
	}
	start, end := span.GetStart().AsTime().UTC(), span.GetEnd().AsTime().UTC()
	p.Period = start.Format(time.DateOnly) + " – " + end.Add(-dataset.Day).Format(time.DateOnly)

	for _, c := range changes {
		at := c.GetChangedAt().AsTime().UTC()
		p.Changes = append(p.Changes, changeView{
			Family: familyLabel(c.GetFamily()),
			From:   newClass(c.GetFromClass()),
			To:     newClass(c.GetToClass()),
			Date:   at.Format(time.DateOnly),
			at:     at,
		})
	}
	slices.SortStableFunc(p.Changes, func(a, b changeView) int { return b.at.Compare(a.at) })
	p.Changes = slices.CompactFunc(p.Changes, func(a, b changeView) bool {
		return a.Family == b.Family && a.Date == b.Date && a.From == b.From && a.To == b.To
	})

	p.Chart = newChart(start, end, timelines, changes, t)

	for _, e := range evidence {
		p.Evidence = append(p.Evidence, newEvidence(e))
	}
	if len(p.Evidence) == 0 {
		// An older query layer gives only the texts.
		for _, text := range all.GetEvidence() {
			p.Evidence = append(p.Evidence, evidenceView{Text: text})
		}
	}
	slices.SortStableFunc(p.Evidence, func(a, b evidenceView) int { return b.last.Compare(a.last) })
	if len(p.Evidence) > maxEvidence {
		p.Evidence = p.Evidence[:maxEvidence]
	}
	s.render(w, r, http.StatusOK, p.Lang, "asn", p)
}

// WindowForm is the ASN page's window selector.
func (p *asnPage) WindowForm() windowForm {
	return windowForm{Action: "/asn/" + p.Label, Windows: p.Windows, Hidden: p.hidden()}
}

func newFamilyView(sum *pb.ASNSummary) familyView {
	fv := familyView{
		Family:   familyLabel(sum.GetFamily()),
		Class:    newClass(sum.GetPolicyClass()),
		Agents:   sum.GetAgents(),
		Prefixes: sum.GetPrefixes(),
	}
	ports := slices.Clone(sum.GetPorts())
	// 25 first, then the submission ports 587 and 465, then any other.
	order := func(p uint32) int {
		switch p {
		case 25:
			return 0
		case 587:
			return 1
		case 465:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(ports, func(a, b *pb.PortStats) int {
		return cmp.Or(cmp.Compare(order(a.GetPort()), order(b.GetPort())), cmp.Compare(a.GetPort(), b.GetPort()))
	})
	var verdicts []pb.Verdict
	for _, v := range shownVerdicts {
		for _, p := range ports {
			if shareOf(p, v) != nil {
				verdicts = append(verdicts, v)
				break
			}
		}
	}
	for _, v := range verdicts {
		fv.Verdicts = append(fv.Verdicts, dataset.VerdictName(v))
	}
	for _, p := range ports {
		row := portRow{Port: p.GetPort(), Agents: p.GetAgents(), Prefixes: p.GetPrefixes(), Results: p.GetResults()}
		for _, v := range verdicts {
			row.Shares = append(row.Shares, shareOf(p, v))
		}
		fv.Ports = append(fv.Ports, row)
	}
	return fv
}

func (p *asnPage) addPeers(f pb.AddressFamily, asn uint32, resp *pb.GetPeersResponse, window string) {
	pv := peerView{
		Family:  familyLabel(f),
		Rank:    resp.GetRank(),
		Count:   resp.GetPeerCount(),
		Country: resp.GetSubject().GetCountry(),
	}
	if pv.Country == "" {
		pv.Country = p.Country
	}
	for _, peer := range resp.GetPeers() {
		pv.Rows = append(pv.Rows, peerRow{
			Label:   asnLabel(peer.GetAsn()),
			Name:    peer.GetName(),
			Class:   newClass(peer.GetPolicyClass()),
			Blocked: blockedShare(port(peer.GetPorts(), 25)),
			Subject: peer.GetAsn() == asn,
			Href:    p.Link("/asn/"+asnLabel(peer.GetAsn()), "window", window),
		})
	}
	if pv.Rank > 0 || len(pv.Rows) > 0 {
		p.Peers = append(p.Peers, pv)
	}
	for _, g := range resp.GetGaps() {
		gv := gapView{Family: familyLabel(g.GetFamily()), Raw: g.GetKind(), Detail: g.GetDetail()}
		if slices.Contains(knownGaps, g.GetKind()) {
			gv.Kind = g.GetKind()
		}
		if !slices.Contains(p.Gaps, gv) {
			p.Gaps = append(p.Gaps, gv)
		}
	}
}

func newEvidence(e *pb.EvidenceItem) evidenceView {
	ev := evidenceView{
		Family:  familyLabel(e.GetFamily()),
		Port:    e.GetPort(),
		Verdict: dataset.VerdictName(e.GetVerdict()),
		Text:    e.GetText(),
		Results: e.GetResults(),
	}
	if e.GetVerdict() == pb.Verdict_VERDICT_UNSPECIFIED {
		ev.Verdict = ""
	}
	if t := e.GetFirstSeen(); t != nil {
		ev.FirstSeen = t.AsTime().UTC().Format(time.DateOnly)
	}
	if t := e.GetLastSeen(); t != nil {
		ev.last = t.AsTime()
		ev.LastSeen = ev.last.UTC().Format(time.DateOnly)
	}
	return ev
}
