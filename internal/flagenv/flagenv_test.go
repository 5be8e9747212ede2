package flagenv

import (
	"flag"
	"testing"
)

func TestApply(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("state-dir", "default", "")
	b := fs.Int("max-sessions", 1, "")
	c := fs.String("listen", "cli-default", "")
	t.Setenv("OP25B_STATE_DIR", "/from/env")
	t.Setenv("OP25B_LISTEN", "env-listen")
	if err := fs.Parse([]string{"--listen", "cli"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "OP25B"); err != nil {
		t.Fatal(err)
	}
	if *a != "/from/env" || *b != 1 || *c != "cli" {
		t.Errorf("after Apply: state-dir=%q max-sessions=%d listen=%q; want /from/env 1 cli", *a, *b, *c)
	}
	t.Setenv("OP25B_MAX_SESSIONS", "many")
	if err := Apply(fs, "OP25B"); err == nil {
		t.Errorf("Apply with OP25B_MAX_SESSIONS=many succeeded; want error")
	}
}
