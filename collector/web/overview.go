package web

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

type option struct {
	Value, Label string
	Selected     bool
}

// windowForm is the window selector; Hidden carries the page's other
// parameters through a change of window.
type windowForm struct {
	Action  string
	Windows []option
	Hidden  []hiddenField
}

type hiddenField struct{ Name, Value string }

// hidden returns the fields of the pairs kv whose value is set, and the
// language when it was chosen explicitly.
func (b base) hidden(kv ...string) []hiddenField {
	if b.sticky {
		kv = append(kv, "lang", b.Lang)
	}
	var out []hiddenField
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			out = append(out, hiddenField{kv[i], kv[i+1]})
		}
	}
	return out
}

// WindowForm is the overview's window selector.
func (p *overviewPage) WindowForm() windowForm {
	return windowForm{Action: "/", Windows: p.Windows,
		Hidden: p.hidden("country", p.Country, "class", p.Class, "family", p.Family, "q", p.Query)}
}

type overviewPage struct {
	base
	Window  string // as given: "", "7d", "2026-03-01/2026-04-01"
	Windows []option
	Country string
	Class   string
	Family  string
	Query   string

	ClassOptions  []option
	FamilyOptions []option
	Classes       []classView // the legend

	Countries []countryRow
	ASNs      []asnRow
	Shown     int  // rows not hidden by the text filter
	Truncated bool // the table stops at maxASNRows

	RefMTAs      []refmtaRow
	RefMTAFrom   string // the reference MTA window, first and last day
	RefMTATo     string
	RefMTAsAlert []refmtaRow // the flagged ones, for the notice
}

// refmtaRow is one reference MTA, family and port.
type refmtaRow struct {
	ID       string
	Family   string // "IPv4"
	Port     uint32
	Results  uint64
	Blocked  *shareView
	Others   *shareView
	Charged  uint64
	Flagged  bool
	SortKeys [2]string // blocked and others' shares, for sorting
}

func newRefMTARow(r *pb.RefMTAStats) refmtaRow {
	row := refmtaRow{ID: r.GetRefmtaId(), Family: familyLabel(r.GetFamily()), Port: r.GetPort(), Results: r.GetResults(),
		Charged: r.GetCharged(), Flagged: r.GetFlagged()}
	if r.GetConclusive() > 0 {
		b := r.GetBlocked()
		row.Blocked = newShare(b.GetShare(), b.GetWilsonLow(), b.GetWilsonHigh())
	}
	if o := r.GetOthersBlocked(); o.GetWilsonHigh()-o.GetWilsonLow() < 1 {
		row.Others = newShare(o.GetShare(), o.GetWilsonLow(), o.GetWilsonHigh())
	}
	for i, v := range []*shareView{row.Blocked, row.Others} {
		row.SortKeys[i] = "-1"
		if v != nil {
			row.SortKeys[i] = strconv.FormatFloat(v.Value, 'f', 4, 64)
		}
	}
	return row
}

type countryRow struct {
	Country  string
	Family   string
	ASNs     uint64
	Agents   uint64
	Share    float64
	Bar      string // width of the bar, 0 to 100
	Classes  []classCount
	Href     string
	Selected bool
}

type classCount struct {
	Class classView
	Count uint64
}

type asnRow struct {
	ASN      uint32
	Label    string // "AS64500"
	Name     string
	Country  string
	Family   string // "ipv4"
	FamLabel string // "IPv4"
	Class    classView
	Agents   uint64
	Prefixes uint64
	Blocked  *shareView
	Href     string
	Search   string // what the text filter matches, lower case
	Hidden   bool
}

// SortBlocked is the row's sort key for the blocked share; rows without
// data sort first.
func (r asnRow) SortBlocked() string {
	if r.Blocked == nil {
		return "-1"
	}
	return strconv.FormatFloat(r.Blocked.Value, 'f', 4, 64)
}

// filters are the overview's query parameters, checked.
type filters struct {
	window  *pb.TimeRange
	country string
	class   pb.PolicyClass
	family  pb.AddressFamily
}

func (s *server) parseFilters(r *http.Request) (filters, error) {
	q := r.URL.Query()
	var f filters
	var err error
	if f.window, err = dataset.ParseWindow(q.Get("window"), s.now()); err != nil {
		return f, err
	}
	if f.class, err = dataset.ParseClass(q.Get("class")); err != nil {
		return f, err
	}
	if f.family, err = dataset.ParseFamily(q.Get("family")); err != nil {
		return f, err
	}
	f.country = strings.ToUpper(strings.TrimSpace(q.Get("country")))
	if f.country != "" && !isCountryCode(f.country) {
		return f, fmt.Errorf("%w: country %q: want a two-letter ISO 3166 code such as JP", dataset.ErrInvalid, q.Get("country"))
	}
	return f, nil
}

func isCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, err := s.parseFilters(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.info(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	countries, err := s.q.ListCountries(ctx, &pb.ListCountriesRequest{Family: f.family, Window: f.window})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	asns, truncated, err := s.listASNs(r, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}

	q := r.URL.Query()
	p := &overviewPage{
		base:    s.base(w, r, "overview", info),
		Window:  strings.TrimSpace(q.Get("window")),
		Country: f.country,
		Query:   strings.TrimSpace(q.Get("q")),
	}
	if f.class != pb.PolicyClass_POLICY_CLASS_UNSPECIFIED {
		p.Class = dataset.ClassName(f.class)
	}
	p.Family = dataset.FamilyName(f.family)
	t := translator(p.Lang)
	p.Title = t("overview.title")
	p.Windows = windowOptions(info, p.Window, t)
	p.ClassOptions = []option{{Value: "", Label: t("filter.class.all"), Selected: p.Class == ""}}
	p.Classes = allClasses()
	for _, c := range p.Classes {
		p.ClassOptions = append(p.ClassOptions, option{Value: c.Name, Label: c.Label(), Selected: c.Name == p.Class})
	}
	p.FamilyOptions = []option{
		{Value: "", Label: t("filter.family.all"), Selected: p.Family == ""},
		{Value: "ipv4", Label: "IPv4", Selected: p.Family == "ipv4"},
		{Value: "ipv6", Label: "IPv6", Selected: p.Family == "ipv6"},
	}
	for _, c := range countries.GetCountries() {
		p.Countries = append(p.Countries, p.countryRow(c, p.Window))
	}
	// Countries with the most measured ASNs first, a country's families
	// together.
	total := map[string]uint64{}
	for _, c := range p.Countries {
		total[c.Country] += c.ASNs
	}
	slices.SortStableFunc(p.Countries, func(a, b countryRow) int {
		return cmp.Or(cmp.Compare(total[b.Country], total[a.Country]),
			strings.Compare(a.Country, b.Country), strings.Compare(a.Family, b.Family))
	})
	needle := strings.ToLower(p.Query)
	for _, a := range asns {
		row := p.asnRow(a, p.Window)
		row.Hidden = needle != "" && !strings.Contains(row.Search, needle)
		if !row.Hidden {
			p.Shown++
		}
		p.ASNs = append(p.ASNs, row)
	}
	p.Truncated = truncated
	for _, m := range info.GetReferenceMtas() {
		row := newRefMTARow(m)
		p.RefMTAs = append(p.RefMTAs, row)
		if row.Flagged {
			p.RefMTAsAlert = append(p.RefMTAsAlert, row)
		}
	}
	if w := info.GetReferenceMtaWindow(); w != nil {
		p.RefMTAFrom = w.GetStart().AsTime().UTC().Format(time.DateOnly)
		p.RefMTATo = w.GetEnd().AsTime().UTC().Add(-time.Second).Format(time.DateOnly)
	}
	s.render(w, r, http.StatusOK, p.Lang, "overview", p)
}

// listASNs reads every page of the ASN list, up to maxASNRows, sorted by
// ASN and family.
func (s *server) listASNs(r *http.Request, f filters) (asns []*pb.ASNSummary, truncated bool, err error) {
	req := &pb.ListASNsRequest{Country: f.country, PolicyClass: f.class, Family: f.family, Window: f.window}
	for {
		resp, err := s.q.ListASNs(r.Context(), req)
		if err != nil {
			return nil, false, err
		}
		asns = append(asns, resp.GetAsns()...)
		next := resp.GetNextPageToken()
		if next == "" || next == req.GetPageToken() {
			break
		}
		if len(asns) >= maxASNRows {
			truncated = true
			break
		}
		req.PageToken = next
	}
	if len(asns) > maxASNRows {
		asns, truncated = asns[:maxASNRows], true
	}
	slices.SortStableFunc(asns, func(a, b *pb.ASNSummary) int {
		return cmp.Or(cmp.Compare(a.GetAsn(), b.GetAsn()), cmp.Compare(a.GetFamily(), b.GetFamily()))
	})
	return asns, truncated, nil
}

func windowOptions(info *pb.GetInfoResponse, current string, t func(string) string) []option {
	def := fmt.Sprintf("%dd", info.GetDefaultWindowDays())
	if current == "" {
		current = def
	}
	var opts []option
	found := false
	for _, d := range info.GetWindowDays() {
		v := fmt.Sprintf("%dd", d)
		label := fmt.Sprintf(t("window.days"), d)
		opts = append(opts, option{Value: v, Label: label, Selected: v == current})
		found = found || v == current
	}
	if !found {
		opts = append(opts, option{Value: current, Label: current, Selected: true})
	}
	return opts
}

func (p *overviewPage) countryRow(c *pb.CountrySummary, window string) countryRow {
	row := countryRow{
		Country:  c.GetCountry(),
		Family:   familyLabel(c.GetFamily()),
		ASNs:     c.GetAsns(),
		Agents:   c.GetAgents(),
		Share:    clamp01(c.GetOp25BShare()),
		Href:     p.Link("/", "country", c.GetCountry(), "family", dataset.FamilyName(c.GetFamily()), "window", window),
		Selected: c.GetCountry() == p.Country,
	}
	row.Bar = num(row.Share * 100)
	for name, n := range c.GetClasses() {
		class, err := dataset.ParseClass(name)
		if err != nil || n == 0 {
			continue
		}
		row.Classes = append(row.Classes, classCount{Class: newClass(class), Count: n})
	}
	slices.SortFunc(row.Classes, func(a, b classCount) int { return a.Class.Rank - b.Class.Rank })
	return row
}

func (p *overviewPage) asnRow(a *pb.ASNSummary, window string) asnRow {
	row := asnRow{
		ASN:      a.GetAsn(),
		Label:    asnLabel(a.GetAsn()),
		Name:     a.GetName(),
		Country:  a.GetCountry(),
		Family:   dataset.FamilyName(a.GetFamily()),
		FamLabel: familyLabel(a.GetFamily()),
		Class:    newClass(a.GetPolicyClass()),
		Agents:   a.GetAgents(),
		Prefixes: a.GetPrefixes(),
		Blocked:  blockedShare(port(a.GetPorts(), 25)),
		Href:     p.Link("/asn/"+asnLabel(a.GetAsn()), "window", window),
	}
	row.Search = strings.ToLower(strings.Join([]string{row.Label, strconv.FormatUint(uint64(row.ASN), 10), row.Name, row.Country}, " "))
	return row
}
