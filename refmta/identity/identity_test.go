package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestCertificateCarriesKey(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := Certificate(key, "refmta.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !proof.CertificateMatches(cert.Certificate[0], key.Public().(ed25519.PublicKey)) {
		t.Errorf("certificate does not carry the identity key")
	}
}

func TestWriteDocument(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.json")
	doc := &op25bv1.ReferenceMTA{Id: "refmta-x", PublicKey: make([]byte, 32), Addresses: []string{"192.0.2.25", "2001:db8::25"}, Ports: []uint32{25, 587, 465}, ControlPort: 443}
	if err := WriteDocument(path, doc); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got op25bv1.ReferenceMTA
	if err := protojson.Unmarshal(b, &got); err != nil || !proto.Equal(&got, doc) {
		t.Errorf("document read back = %v, %v; want %v", &got, err, doc)
	}
}

func TestHandler(t *testing.T) {
	doc := &op25bv1.ReferenceMTA{Id: "refmta-x", PublicKey: make([]byte, 32), Addresses: []string{"192.0.2.25"}}
	h, err := Handler(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + DocumentPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got op25bv1.ReferenceMTA
	if err := protojson.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 || !proto.Equal(&got, doc) {
		t.Errorf("GET %s = %d %s, %v; want the document", DocumentPath, resp.StatusCode, b, err)
	}
	if resp, err := http.Get(srv.URL + "/other"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /other = %v, %v; want 404", resp.StatusCode, err)
	}
}
