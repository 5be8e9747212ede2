package minisign

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

func key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestMinisignVerifies: minisign itself, the tool people will use,
// verifies what Sign writes and refuses a changed file.
func TestMinisignVerifies(t *testing.T) {
	bin, err := exec.LookPath("minisign")
	if err != nil {
		testenv.Unavailable(t, "minisign is not installed (Debian: apt-get install minisign; make testdeps does it)")
	}
	k := key(t)
	dir := t.TempDir()
	msg := []byte("0123abcd  op25b-agent_v1_linux_amd64\n")
	files := map[string]string{
		"SHA256SUMS":         string(msg),
		"SHA256SUMS.minisig": Sign(k, msg, "op25b release signature", "op25b-agent v1 SHA256SUMS"),
		"release.pub":        PublicKey(k.Public().(ed25519.PublicKey), "op25b release key"),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(bin, "-Vm", filepath.Join(dir, "SHA256SUMS"), "-p", filepath.Join(dir, "release.pub")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Trusted comment: op25b-agent v1 SHA256SUMS") {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte("ffff  op25b-agent_v1_linux_amd64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-Vm", filepath.Join(dir, "SHA256SUMS"), "-p", filepath.Join(dir, "release.pub")).CombinedOutput(); err == nil {
		t.Errorf("minisign verified a changed file:\n%s", out)
	}
}

// TestVerify: our verifier accepts what Sign writes and refuses a changed
// file, a changed trusted comment and another key.
func TestVerify(t *testing.T) {
	k, other := key(t), key(t)
	msg := []byte("sums\n")
	pub := PublicKey(k.Public().(ed25519.PublicKey), "key\nwith a newline")
	sig := Sign(k, msg, "u", "v1 of the sums")
	if got, err := Verify(pub, sig, msg); err != nil || got != "v1 of the sums" {
		t.Fatalf("Verify = %q, %v; want the trusted comment", got, err)
	}
	for name, tc := range map[string]struct{ pub, sig, msg string }{
		"changed file":    {pub, sig, "sums!\n"},
		"changed comment": {pub, strings.Replace(sig, "v1 of the sums", "v2 of the sums", 1), "sums\n"},
		"another key":     {PublicKey(other.Public().(ed25519.PublicKey), "other"), sig, "sums\n"},
		"garbage":         {pub, "not a signature", "sums\n"},
	} {
		if _, err := Verify(tc.pub, tc.sig, []byte(tc.msg)); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
