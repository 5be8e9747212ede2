package httpapi

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// feedEntries is how many of the newest change events the Atom feed
// carries.
const feedEntries = 100

const atomType = "application/atom+xml; charset=utf-8"

// The Atom 1.0 (RFC 4287) elements the feed writes.
type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string      `xml:"id"`
	Title   string      `xml:"title"`
	Updated string      `xml:"updated"`
	Author  atomPerson  `xml:"author"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomEntry struct {
	ID        string         `xml:"id"`
	Title     string         `xml:"title"`
	Updated   string         `xml:"updated"`
	Published string         `xml:"published"`
	Links     []atomLink     `xml:"link"`
	Category  []atomCategory `xml:"category"`
	Summary   string         `xml:"summary"`
}

type atomCategory struct {
	Term string `xml:"term,attr"`
}

// changesAtom serves the newest policy change events, optionally of one
// country or ASN, as an Atom feed (docs/dataset.md, Change feeds).
func (s *server) changesAtom(w http.ResponseWriter, r *http.Request, q *query) error {
	f := dataset.EventFilter{Country: q.country(), ASN: q.asn(), Newest: true, Limit: feedEntries}
	if q.err != nil {
		return q.err
	}
	events, err := s.q.ChangeEvents(r.Context(), f)
	if err != nil {
		return err
	}
	base := s.baseURL(r)
	feed := atomFeed{
		ID:      "urn:op25b:changes",
		Title:   "OP25B Observatory: policy changes",
		Updated: time.Unix(0, 0).UTC().Format(time.RFC3339), // no change yet
		Author:  atomPerson{Name: "OP25B Observatory"},
		Links: []atomLink{
			{Rel: "self", Type: "application/atom+xml", Href: base + r.URL.RequestURI()},
			{Rel: "alternate", Type: "text/html", Href: base + "/"},
		},
	}
	if f.ASN != 0 {
		feed.ID += ":asn:" + strconv.FormatUint(uint64(f.ASN), 10)
		feed.Title += fmt.Sprintf(" of AS%d", f.ASN)
		feed.Links[1].Href = fmt.Sprintf("%s/asn/%d", base, f.ASN)
	}
	if f.Country != "" {
		feed.ID += ":country:" + f.Country
		feed.Title += " in " + f.Country
	}
	if len(events) > 0 {
		feed.Updated = events[0].SeenAt.UTC().Format(time.RFC3339Nano)
	}
	for _, e := range events {
		feed.Entries = append(feed.Entries, atomEntryOf(e, base))
	}
	b, err := xml.MarshalIndent(feed, "", "  ")
	if err != nil {
		return fmt.Errorf("httpapi: encode the Atom feed: %w", err)
	}
	b = append([]byte(xml.Header), append(b, '\n')...)
	h := w.Header()
	h.Set("Content-Type", atomType)
	h.Set("Cache-Control", cacheControl)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	return nil
}

// atomEntryOf is the entry of one change event. Its id names the change
// (and its retraction), not the event, so that it is the same on every
// collector and after a rebuild.
func atomEntryOf(e dataset.ChangeEvent, base string) atomEntry {
	day := e.Day.Format(time.DateOnly)
	from, to := dataset.ClassName(e.From), dataset.ClassName(e.To)
	id := fmt.Sprintf("urn:op25b:change:%d:%s:%s:%s:%s", e.ASN, dataset.FamilyName(e.Family), day, from, to)
	network := fmt.Sprintf("AS%d", e.ASN)
	switch {
	case e.Name != "" && e.Country != "":
		network += fmt.Sprintf(" (%s, %s)", e.Name, e.Country)
	case e.Name != "" || e.Country != "":
		network += " (" + e.Name + e.Country + ")"
	}
	fam := familyTitle(e.Family)
	title := fmt.Sprintf("%s %s: %s → %s on %s", network, fam, from, to, day)
	summary := fmt.Sprintf("%s changed its %s policy class from %s to %s on %s.", network, fam, from, to, day)
	if e.Retracted {
		id += ":retracted"
		title = "Retracted: " + title
		summary = fmt.Sprintf("Retracted: with the results recomputed, %s no longer shows a change of its %s policy class from %s to %s on %s.",
			network, fam, from, to, day)
	}
	seen := e.SeenAt.UTC().Format(time.RFC3339Nano)
	return atomEntry{
		ID: id, Title: title, Updated: seen, Published: seen, Summary: summary,
		Links:    []atomLink{{Rel: "alternate", Type: "text/html", Href: fmt.Sprintf("%s/asn/%d", base, e.ASN)}},
		Category: []atomCategory{{Term: to}},
	}
}

func familyTitle(f pb.AddressFamily) string {
	return strings.Replace(strings.ToUpper(dataset.FamilyName(f)), "IPV", "IPv", 1)
}

// baseURL is the collector's web address: Options.PublicURL, or the
// address r was sent to.
func (s *server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil || s.trustProxy && r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
