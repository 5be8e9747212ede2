package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// prefixesPage is one ASN's /24 and /48 prefixes: which still let port 25
// out, and since when.
type prefixesPage struct {
	base
	ASN      uint32
	Label    string
	Window   string
	Family   string // the family parameter, "" for both
	Windows  []option
	Period   string
	Prefixes []prefixView
	Next     string // the next page's URL, "" on the last
}

type prefixView struct {
	Prefix   string
	Family   string
	Agents   uint64
	Ports    []verdictView // 25, 587, 465
	LastSeen string
	Days     []dayView // every day of the window
}

// verdictView is a verdict as a cell: its name, its group's CSS key and,
// when the prefix's agents disagreed, how many of them had it.
type verdictView struct {
	Name   string // "BLOCKED_TIMEOUT"; "" for no conclusive result
	Key    string // "open", "blocked", "intercepted", "tampered", "none"
	Agreed string // "1/2", or "" when all agreed
}

type dayView struct {
	Key   string
	Title string // "2026-03-05: BLOCKED_RESET"
}

// verdictKey is the CSS key of a verdict's group.
func verdictKey(v pb.Verdict) string {
	switch v {
	case pb.Verdict_VERDICT_OPEN:
		return "open"
	case pb.Verdict_VERDICT_BLOCKED_TIMEOUT, pb.Verdict_VERDICT_BLOCKED_RESET, pb.Verdict_VERDICT_BLOCKED_UNREACHABLE:
		return "blocked"
	case pb.Verdict_VERDICT_INTERCEPTED:
		return "intercepted"
	case pb.Verdict_VERDICT_TAMPERED:
		return "tampered"
	}
	return "none"
}

func newVerdictView(pp *pb.PrefixPort) verdictView {
	v := pp.GetVerdict()
	if v == pb.Verdict_VERDICT_UNSPECIFIED {
		return verdictView{Key: "none"}
	}
	vv := verdictView{Name: dataset.VerdictName(v), Key: verdictKey(v)}
	var agreed, all uint64
	for _, av := range pp.GetAgentVerdicts() {
		all += av.GetAgents()
		if av.GetVerdict() == v {
			agreed = av.GetAgents()
		}
	}
	if agreed != all {
		vv.Agreed = fmt.Sprintf("%d/%d", agreed, all)
	}
	return vv
}

func (s *server) prefixes(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	asn, err := dataset.ParseASN(r.PathValue("asn"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	query := r.URL.Query()
	windowParam := strings.TrimSpace(query.Get("window"))
	window, err := dataset.ParseWindow(windowParam, s.now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family, err := dataset.ParseFamily(query.Get("family"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.info(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token := query.Get("page_token")
	resp, err := s.q.GetPrefixes(ctx, &pb.GetPrefixesRequest{Asn: asn, Family: family, Window: window, PageToken: token})
	if errors.Is(err, dataset.ErrNotFound) {
		s.asnNotFound(w, r, asn)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}

	p := &prefixesPage{base: s.base(w, r, "asn", info), ASN: asn, Label: asnLabel(asn), Window: windowParam,
		Family: dataset.FamilyName(family)}
	t := translator(p.Lang)
	p.Title = fmt.Sprintf("%s %s", p.Label, t("prefixes.title"))
	p.Windows = windowOptions(info, windowParam, t)
	span := resp.GetWindow()
	if span == nil {
		span = window
	}
	if span == nil {
		span = dataset.Rolling(int(max(1, info.GetDefaultWindowDays())), s.now())
	}
	start, end := dataset.Today(span.GetStart().AsTime()), span.GetEnd().AsTime().UTC()
	p.Period = start.Format(time.DateOnly) + " – " + end.Add(-dataset.Day).Format(time.DateOnly)
	for _, px := range resp.GetPrefixes() {
		pv := prefixView{Prefix: px.GetPrefix(), Family: familyLabel(px.GetFamily()), Agents: px.GetAgents(),
			LastSeen: px.GetLastSeen().AsTime().UTC().Format(time.DateOnly)}
		for _, port := range []uint32{25, 587, 465} {
			var found *pb.PrefixPort
			for _, pp := range px.GetPorts() {
				if pp.GetPort() == port {
					found = pp
				}
			}
			pv.Ports = append(pv.Ports, newVerdictView(found))
		}
		byDay := map[time.Time]pb.Verdict{}
		for _, d := range px.GetDays() {
			for _, v := range d.GetPorts() {
				if v.GetPort() == 25 {
					byDay[d.GetDay().AsTime().UTC()] = v.GetVerdict()
				}
			}
		}
		for d := start; d.Before(end); d = d.Add(dataset.Day) {
			dv := dayView{Key: "none", Title: d.Format(time.DateOnly) + ": " + t("prefixes.day.none")}
			if v, ok := byDay[d]; ok {
				dv = dayView{Key: verdictKey(v), Title: d.Format(time.DateOnly) + ": " + dataset.VerdictName(v)}
			}
			pv.Days = append(pv.Days, dv)
		}
		p.Prefixes = append(p.Prefixes, pv)
	}
	if next := resp.GetNextPageToken(); next != "" {
		p.Next = p.Link("/asn/"+p.Label+"/prefixes", "window", windowParam, "family", p.Family, "page_token", next)
	}
	s.render(w, r, http.StatusOK, p.Lang, "prefixes", p)
}

// WindowForm is the prefixes page's window selector.
func (p *prefixesPage) WindowForm() windowForm {
	return windowForm{Action: "/asn/" + p.Label + "/prefixes", Windows: p.Windows, Hidden: p.hidden("family", p.Family)}
}
