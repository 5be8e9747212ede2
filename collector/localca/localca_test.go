package localca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c1, err := Ensure(dir, []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Pool(filepath.Join(dir, CACert))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c1.Certificate[0])
	for _, h := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", h, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, caKey)); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v; want 0600", st.Mode().Perm())
	}
	c2, _ := Ensure(dir, []string{"localhost"}, now)
	if string(c2.Certificate[0]) != string(c1.Certificate[0]) {
		t.Errorf("Ensure with covered hosts made a new certificate")
	}
	c3, err := Ensure(dir, []string{"collector.example"}, now)
	if err != nil || string(c3.Certificate[0]) == string(c1.Certificate[0]) {
		t.Errorf("Ensure with a new host kept the old certificate (%v)", err)
	}
	// Same CA throughout.
	leaf3, _ := x509.ParseCertificate(c3.Certificate[0])
	if _, err := leaf3.Verify(x509.VerifyOptions{DNSName: "collector.example", Roots: pool}); err != nil {
		t.Errorf("new server certificate is not from the same CA: %v", err)
	}
}
