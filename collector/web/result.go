package web

import (
	"net/http"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/internal/advice"
	"github.com/op25b/observatory/internal/verdict"
)

// resultPage is a one-off contribution's page, /result/{id}: what the
// round found, from where (prefixes and ASNs, never the address), and what
// it means for the volunteer's mail in the advice texts `op25b-agent
// check` prints.
type resultPage struct {
	base
	ID        string
	Measured  string
	Submitted string
	Version   string
	Advice    []adviceText
	Networks  []resultNetwork
	Results   []resultRow
	APIURL    string
}

type adviceText struct{ Head, Body string }

type resultNetwork struct {
	Family, Prefix, ASN, Name, Country, Href string
}

type resultRow struct {
	RefMTA, Family, Verdict, Failure string
	Port                             uint32
	Charged                          bool
}

// result renders GET /result/{id}.
func (s *server) result(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sub, err := s.q.GetSubmission(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.info(r.Context())
	if err != nil {
		info = nil
	}
	p := resultPage{base: s.base(w, r, "check", info), ID: sub.GetSubmissionId(), Version: sub.GetAgentVersion(),
		APIURL: "/api/v1/submissions/" + sub.GetSubmissionId()}
	p.Title = translator(p.Lang)("result.title")
	p.Measured = sub.GetMeasuredAt().AsTime().UTC().Format("2006-01-02 15:04 UTC")
	p.Submitted = sub.GetSubmittedAt().AsTime().UTC().Format(time.RFC3339)
	var rs []advice.Result
	for _, x := range sub.GetResults() {
		rs = append(rs, advice.Result{Port: uint16(x.GetPort()), Verdict: verdict.Verdict(x.GetVerdict())})
		p.Results = append(p.Results, resultRow{RefMTA: x.GetRefmtaId(), Family: familyLabel(x.GetFamily()), Port: x.GetPort(),
			Verdict: dataset.VerdictName(x.GetVerdict()), Failure: x.GetFailure(), Charged: x.GetRefmtaCharged()})
	}
	for _, sit := range advice.Situations(rs) {
		head, body := advice.Text(sit, p.Lang)
		p.Advice = append(p.Advice, adviceText{head, body})
	}
	for _, n := range sub.GetNetworks() {
		rn := resultNetwork{Family: familyLabel(n.GetFamily()), Prefix: n.GetPrefix(), Name: n.GetAsName(), Country: n.GetCountry()}
		if n.GetAsn() != 0 {
			rn.ASN = asnLabel(n.GetAsn())
			rn.Href = p.Link("/asn/" + rn.ASN)
		}
		p.Networks = append(p.Networks, rn)
	}
	s.render(w, r, http.StatusOK, p.Lang, "result", &p)
}
