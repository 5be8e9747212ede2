package identity

import (
	"crypto/ed25519"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/proof"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestKeyCreatedOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "key.pem")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKey = created %v, %v; want created", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Errorf("second LoadOrCreateKey = created %v, same key %v, %v; want the stored key", created, k1.Equal(k2), err)
	}
}

func TestKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if _, _, err := LoadOrCreateKey(path); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: err = %v; want a refusal that says chmod 600", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	if _, _, err := LoadOrCreateKey(garbage); err == nil {
		t.Errorf("garbage key file accepted")
	}
}

func TestCertificateCarriesKey(t *testing.T) {
	key, _, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "key.pem"))
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
