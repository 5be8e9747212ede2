package refmtaspec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/internal/proof"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/identity"
)

func newKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// document writes an identity document as the reference MTA does.
func document(t *testing.T, doc *op25bv1.ReferenceMTA) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "identity.json")
	if err := identity.WriteDocument(path, doc); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolveFile(t *testing.T) {
	pub := newKey(t)
	path := document(t, &op25bv1.ReferenceMTA{Id: "refmta-tokyo-1", PublicKey: pub,
		Addresses: []string{"192.0.2.25", "2001:db8::25"}, Ports: []uint32{25, 587, 465}, ControlPort: 8443, Hostname: "mx.example"})
	got, err := Resolve(context.Background(), path)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", path, err)
	}
	want := Identity{ID: "refmta-tokyo-1", Key: pub, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("2001:db8::25")},
		Ports: []uint16{25, 587, 465}, ControlPort: 8443, Hostname: "mx.example"}
	if !equal(got, want) {
		t.Errorf("Resolve(%q) = %+v; want %+v", path, got, want)
	}
}

func equal(a, b Identity) bool {
	return a.ID == b.ID && a.Key.Equal(b.Key) && slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Ports, b.Ports) &&
		a.ControlPort == b.ControlPort && a.Hostname == b.Hostname
}

func TestResolveURL(t *testing.T) {
	pub := newKey(t)
	doc, err := os.ReadFile(document(t, &op25bv1.ReferenceMTA{PublicKey: pub, Addresses: []string{"192.0.2.25"}}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/identity.json", func(w http.ResponseWriter, r *http.Request) { w.Write(doc) })
	mux.HandleFunc("/huge.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"id": "` + strings.Repeat("x", MaxDocument) + `"}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	got, err := Resolve(context.Background(), srv.URL+"/identity.json")
	if err != nil {
		t.Fatalf("Resolve(url): %v", err)
	}
	want := Identity{ID: "refmta-" + proof.KeyID(pub), Key: pub, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.25")}}
	if !equal(got, want) {
		t.Errorf("Resolve(url) = %+v; want %+v", got, want)
	}
	for _, tc := range []struct{ path, wantErr string }{
		{"/missing.json", "404 Not Found"},
		{"/huge.json", "larger than 64 KiB"},
	} {
		if _, err := Resolve(context.Background(), srv.URL+tc.path); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Resolve(%q) error = %v; want one saying %q", tc.path, err, tc.wantErr)
		}
	}
}

func TestParseInline(t *testing.T) {
	pub := newKey(t)
	key := proof.EncodeKey(pub)
	for _, tc := range []struct {
		spec string
		want []netip.Addr
	}{
		{key + "@192.0.2.25", []netip.Addr{netip.MustParseAddr("192.0.2.25")}},
		{key + "@192.0.2.25,[2001:db8::25]", []netip.Addr{netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("2001:db8::25")}},
		{key + "@2001:db8::25", []netip.Addr{netip.MustParseAddr("2001:db8::25")}},
		{key + "@::ffff:192.0.2.25", []netip.Addr{netip.MustParseAddr("192.0.2.25")}},
	} {
		got, err := Resolve(context.Background(), tc.spec)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.spec, err)
			continue
		}
		want := Identity{ID: "refmta-" + proof.KeyID(pub), Key: pub, Addrs: tc.want}
		if !equal(got, want) {
			t.Errorf("Resolve(%q) = %+v; want %+v", tc.spec, got, want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	key := proof.EncodeKey(newKey(t))
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		spec, wantErr string
	}{
		{filepath.Join(dir, "missing.json"), "no such file"},
		{"AAAA@192.0.2.1", "not a base64 Ed25519 public key"},
		{key + "@mx.example.org", `"mx.example.org" is not an IPv4 or IPv6 address`},
		{key + "@192.0.2.1,", `"" is not an IPv4 or IPv6 address`},
		{key + "@0.0.0.0", "cannot be a reference MTA's address"},
		{write("garbage.json", "not json"), "not an identity document"},
		{write("nokey.json", `{"addresses": ["192.0.2.1"]}`), "publicKey is 0 bytes"},
		{write("noaddr.json", `{"publicKey": "`+key+`"}`), "lists no addresses"},
		{write("badaddr.json", `{"publicKey": "`+key+`", "addresses": ["localhost"]}`), `"localhost" is not an IPv4 or IPv6 address`},
		{write("badport.json", `{"publicKey": "`+key+`", "addresses": ["192.0.2.1"], "ports": [70000]}`), "port 70000 out of range"},
		{"ftp://example.org/identity.json", "no such file"},
	} {
		_, err := Resolve(context.Background(), tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Resolve(%q) error = %v; want one saying %q", tc.spec, err, tc.wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "refmtaspec: ") {
			t.Errorf("Resolve(%q) error = %q; want it to start with refmtaspec:", tc.spec, err)
		}
	}
}

func TestParseIgnoresUnknownFields(t *testing.T) {
	key := proof.EncodeKey(newKey(t))
	if _, err := Parse([]byte(`{"publicKey": "` + key + `", "addresses": ["192.0.2.1"], "fromTheFuture": 1}`)); err != nil {
		t.Errorf("Parse with an unknown field: %v", err)
	}
}

func TestTargets(t *testing.T) {
	pub := newKey(t)
	v4, v6 := netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("2001:db8::25")
	id := Identity{ID: "r", Key: pub, Addrs: []netip.Addr{v4, v6}}
	for _, tc := range []struct {
		name  string
		id    Identity
		o     Options
		addrs []netip.Addr
		ports []uint16
		ctl   uint16
	}{
		{"defaults", id, Options{}, []netip.Addr{v4, v6}, []uint16{25, 587, 465}, 443},
		{"identity's ports", Identity{ID: "r", Key: pub, Addrs: id.Addrs, Ports: []uint16{25}, ControlPort: 8443},
			Options{}, []netip.Addr{v4, v6}, []uint16{25}, 8443},
		{"overrides", Identity{ID: "r", Key: pub, Addrs: id.Addrs, Ports: []uint16{25}, ControlPort: 8443},
			Options{Ports: []uint16{587}, ControlPort: 444}, []netip.Addr{v4, v6}, []uint16{587}, 444},
		{"IPv4 only", id, Options{Family: probe.IPv4}, []netip.Addr{v4}, []uint16{25, 587, 465}, 443},
		{"IPv6 only", id, Options{Family: probe.IPv6}, []netip.Addr{v6}, []uint16{25, 587, 465}, 443},
	} {
		got := tc.id.Targets(tc.o)
		var addrs []netip.Addr
		for _, tg := range got {
			addrs = append(addrs, tg.Addr)
			want := probe.StandardPorts(tc.ports...)
			if !slices.Equal(tg.Ports, want) || tg.ControlPort != tc.ctl || tg.RefMTA != "r" || !tg.Key.Equal(pub) {
				t.Errorf("Targets(%s) = %+v; want ports %v, control port %d", tc.name, tg, want, tc.ctl)
			}
		}
		if !slices.Equal(addrs, tc.addrs) {
			t.Errorf("Targets(%s) addresses = %v; want %v", tc.name, addrs, tc.addrs)
		}
	}
}

func TestTargetsImplicitTLSFromIdentity(t *testing.T) {
	key := proof.EncodeKey(newKey(t))
	id, err := Parse([]byte(`{"publicKey": "` + key + `", "addresses": ["127.0.0.1"], "ports": [2525, 5870, 4650], "implicitTlsPorts": [4650], "controlPort": 4430}`))
	if err != nil {
		t.Fatal(err)
	}
	got := id.Targets(Options{})[0].Ports
	want := []probe.Port{{Number: 2525}, {Number: 5870}, {Number: 4650, ImplicitTLS: true}}
	if !slices.Equal(got, want) {
		t.Errorf("Targets ports = %+v; want %+v", got, want)
	}
}
