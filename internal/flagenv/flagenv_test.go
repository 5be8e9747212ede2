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

func TestList(t *testing.T) {
	var l List
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(&l, "listen", "")
	if err := fs.Parse([]string{"--listen", "192.0.2.1, ::1", "--listen", "198.51.100.1", "--listen", ","}); err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "192.0.2.1,::1,198.51.100.1" {
		t.Errorf("List = %q; want the three values in order", got)
	}
}
