package httpapi

import (
	"encoding/xml"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
)

// readFeed is what a feed reader takes from an Atom document; it is
// declared apart from the writer's types so that a wrong namespace or
// element name fails the test.
type readFeed struct {
	XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string   `xml:"http://www.w3.org/2005/Atom id"`
	Title   string   `xml:"http://www.w3.org/2005/Atom title"`
	Updated string   `xml:"http://www.w3.org/2005/Atom updated"`
	Author  struct {
		Name string `xml:"http://www.w3.org/2005/Atom name"`
	} `xml:"http://www.w3.org/2005/Atom author"`
	Links []struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	} `xml:"http://www.w3.org/2005/Atom link"`
	Entries []struct {
		ID      string `xml:"http://www.w3.org/2005/Atom id"`
		Title   string `xml:"http://www.w3.org/2005/Atom title"`
		Updated string `xml:"http://www.w3.org/2005/Atom updated"`
		Summary string `xml:"http://www.w3.org/2005/Atom summary"`
		Link    struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"http://www.w3.org/2005/Atom link"`
		Category struct {
			Term string `xml:"term,attr"`
		} `xml:"http://www.w3.org/2005/Atom category"`
	} `xml:"http://www.w3.org/2005/Atom entry"`
}

func getFeed(t *testing.T, h http.Handler, rq request) readFeed {
	t.Helper()
	w := do(h, rq)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/atom+xml; charset=utf-8" {
		t.Fatalf("GET %s = %d %q; want 200 application/atom+xml\n%s", rq.target, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var f readFeed
	if err := xml.Unmarshal(w.Body.Bytes(), &f); err != nil {
		t.Fatalf("GET %s: not Atom: %v\n%s", rq.target, err, w.Body)
	}
	// RFC 4287: a feed has an id, a title, updated and an author (its
	// entries have none); an entry has an id, a title and updated.
	if f.ID == "" || f.Title == "" || f.Author.Name == "" {
		t.Errorf("GET %s: feed %+v lacks a required element", rq.target, f)
	}
	if _, err := time.Parse(time.RFC3339, f.Updated); err != nil {
		t.Errorf("GET %s: feed updated %q: %v", rq.target, f.Updated, err)
	}
	for _, e := range f.Entries {
		if _, err := time.Parse(time.RFC3339, e.Updated); err != nil || e.ID == "" || e.Title == "" {
			t.Errorf("GET %s: entry %+v lacks an id, a title or an RFC 3339 updated", rq.target, e)
		}
	}
	return f
}

var feedEvents = []dataset.ChangeEvent{
	{ID: 7, ASN: 64500, Name: "Example Net", Country: "JP", Family: v4, Day: time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC),
		From: classOpen, To: classOP25B, SeenAt: time.Date(2026, 3, 9, 0, 1, 0, 0, time.UTC)},
	{ID: 5, ASN: 64511, Country: "US", Family: v6, Day: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		From: classMixed, To: classOpen, Retracted: true, SeenAt: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
}

// TestChangesAtom: the feed carries the events newest first with stable
// ids, the titles of the issue, links to the ASN pages; its filters reach
// the query layer and name the feed; bad ones are refused like the JSON
// API's.
func TestChangesAtom(t *testing.T) {
	f := &fake{events: feedEvents}
	h := newHandler(f, Options{})
	feed := getFeed(t, h, request{target: "/api/v1/changes.atom"})
	if feed.ID != "urn:op25b:changes" || feed.Updated != "2026-03-09T00:01:00Z" || len(feed.Links) != 2 ||
		feed.Links[0].Rel != "self" || feed.Links[0].Href != "http://example.com/api/v1/changes.atom" {
		t.Errorf("feed %+v; want id urn:op25b:changes, updated as its newest entry, a self link", feed)
	}
	if f.lastEvents != (dataset.EventFilter{Newest: true, Limit: feedEntries}) {
		t.Errorf("the feed asked for %+v; want the %d newest events", f.lastEvents, feedEntries)
	}
	if len(feed.Entries) != 2 {
		t.Fatalf("%d entries; want 2", len(feed.Entries))
	}
	e := feed.Entries[0]
	if e.ID != "urn:op25b:change:64500:ipv4:2026-03-08:OPEN:OP25B" || e.Title != "AS64500 (Example Net, JP) IPv4: OPEN → OP25B on 2026-03-08" ||
		e.Updated != "2026-03-09T00:01:00Z" || e.Link.Href != "http://example.com/asn/64500" || e.Category.Term != "OP25B" ||
		!strings.Contains(e.Summary, "from OPEN to OP25B") {
		t.Errorf("entry %+v", e)
	}
	r := feed.Entries[1]
	if r.ID != "urn:op25b:change:64511:ipv6:2026-03-01:MIXED:OPEN:retracted" || r.Title != "Retracted: AS64511 (US) IPv6: MIXED → OPEN on 2026-03-01" {
		t.Errorf("retraction entry %+v", r)
	}

	feed = getFeed(t, h, request{target: "/api/v1/changes.atom?country=jp"})
	if f.lastEvents.Country != "JP" || feed.ID != "urn:op25b:changes:country:JP" || !strings.HasSuffix(feed.Title, " in JP") || len(feed.Entries) != 1 {
		t.Errorf("country=jp: asked %+v, feed %q %q with %d entries; want JP's", f.lastEvents, feed.ID, feed.Title, len(feed.Entries))
	}
	feed = getFeed(t, h, request{target: "/api/v1/changes.atom?asn=AS64511"})
	if f.lastEvents.ASN != 64511 || feed.ID != "urn:op25b:changes:asn:64511" || feed.Links[1].Href != "http://example.com/asn/64511" || len(feed.Entries) != 1 {
		t.Errorf("asn=AS64511: asked %+v, feed %+v; want AS64511's, linking to its page", f.lastEvents, feed)
	}
	feed = getFeed(t, h, request{target: "/api/v1/changes.atom?asn=64999"})
	if len(feed.Entries) != 0 || feed.Updated != "1970-01-01T00:00:00Z" {
		t.Errorf("a feed without entries: %+v; want updated at the epoch", feed)
	}

	for target, says := range map[string]string{
		"/api/v1/changes.atom?country=Japan": "country",
		"/api/v1/changes.atom?asn=x":         "ASN",
		"/api/v1/changes.atom?family=ipv4":   "unknown query parameter",
	} {
		if b := checkError(t, target, get(h, target), 400, "INVALID_ARGUMENT"); !strings.Contains(b.Error.Message, says) {
			t.Errorf("GET %s: %q; want it to say %q", target, b.Error.Message, says)
		}
	}

	// Behind the collector's public address, or a proxy it trusts.
	feed = getFeed(t, newHandler(f, Options{PublicURL: "https://observatory.example/"}), request{target: "/api/v1/changes.atom"})
	if feed.Entries[0].Link.Href != "https://observatory.example/asn/64500" {
		t.Errorf("with PublicURL the entry links to %q", feed.Entries[0].Link.Href)
	}
	feed = getFeed(t, newHandler(f, Options{TrustProxy: true}), request{target: "/api/v1/changes.atom",
		header: http.Header{"X-Forwarded-Proto": {"https"}}})
	if feed.Links[0].Href != "https://example.com/api/v1/changes.atom" {
		t.Errorf("behind a TLS proxy the self link is %q", feed.Links[0].Href)
	}
}

// TestSeededChangesAtom: over the real query layer, the refresh's event
// of the seeded world's change is in the feed of its country.
func TestSeededChangesAtom(t *testing.T) {
	_, d := datasettest.Open(t, datasettest.NewWorld())
	h := New(d, Options{Now: datasettest.Clock})
	feed := getFeed(t, h, request{target: "/api/v1/changes.atom?country=JP"})
	want := "AS64506 (Switching ISP, JP) IPv4: OPEN → OP25B on " + datasettest.ChangeDay.Format(time.DateOnly)
	if len(feed.Entries) != 1 || feed.Entries[0].Title != want || feed.Updated != datasettest.Now.Format(time.RFC3339) {
		t.Errorf("seeded JP feed: %+v; want one entry %q seen at %s", feed, want, datasettest.Now)
	}
	if feed := getFeed(t, h, request{target: "/api/v1/changes.atom?country=DE"}); len(feed.Entries) != 0 {
		t.Errorf("seeded DE feed has %d entries; want none", len(feed.Entries))
	}
}
