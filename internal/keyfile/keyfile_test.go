package keyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyCreatedOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "key.pem")
	k1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate = created %v, %v; want created", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Errorf("second LoadOrCreate = created %v, same key %v, %v; want the stored key", created, k1.Equal(k2), err)
	}
}

func TestKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if _, _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: err = %v; want a refusal that says chmod 600", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	if _, _, err := LoadOrCreate(garbage); err == nil {
		t.Errorf("garbage key file accepted")
	}
}

func TestSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "credential")
	if _, err := ReadSecret(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSecret of a missing file = %v; want ErrNotExist", err)
	}
	if err := WriteSecret(path, "agent-1.s3cret"); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecret(path); err != nil || got != "agent-1.s3cret" {
		t.Errorf("ReadSecret = %q, %v", got, err)
	}
	os.Chmod(path, 0o640)
	if _, err := ReadSecret(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable secret: %v; want a refusal", err)
	}
}
