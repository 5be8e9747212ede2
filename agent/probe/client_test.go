package probe

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/op25b/observatory/internal/testenv"
	"github.com/op25b/observatory/internal/verdict"
)

// The probe writes only EHLO, STARTTLS and QUIT (DESIGN.md). These tests
// hold the code to it: one on the wire, one on the source.

var allowedLine = regexp.MustCompile(`^(EHLO n[0-9a-f]{32}\.op25b\.invalid|STARTTLS|QUIT)$`)

// TestWireOnlyEHLOSTARTTLSQUIT records every byte the probe sends in full
// dialogs with a real server (plaintext, and the plaintext inside TLS) and
// checks that each is part of an allowed command line.
func TestWireOnlyEHLOSTARTTLSQUIT(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*fakeMTA)
		want []verdict.Verdict
	}{
		{"reference MTA", nil, []verdict.Verdict{verdict.Open, verdict.Open}},
		{"STARTTLS stripped", func(f *fakeMTA) { f.strip = true }, []verdict.Verdict{verdict.Tampered, verdict.Open}},
		// No statement: a third party on the STARTTLS port; behind the
		// certificate pinned to the reference MTA's key on the implicit-TLS
		// port, the reference MTA's own fault.
		{"no proof", func(f *fakeMTA) { f.key = nil }, []verdict.Verdict{verdict.Intercepted, verdict.Inconclusive}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wires []*lockedBuffer
			tg := fakeRefMTA(t, "127.0.0.1", newKey(t), func(f *fakeMTA) {
				f.wire = &lockedBuffer{}
				wires = append(wires, f.wire)
				if tc.edit != nil {
					tc.edit(f)
				}
			})
			res := runRound(t, tg)
			for i, r := range res {
				if r.Verdict != tc.want[i] {
					t.Errorf("port %d: verdict %v (%s); want %v", r.Port, r.Verdict, r.Detail, tc.want[i])
				}
			}
			// The sessions end when the probe closes; wait for the
			// servers to have read everything.
			testenv.WaitFor(t, "the servers to read QUIT", 2*time.Second, func() bool {
				for _, w := range wires {
					if !strings.HasSuffix(w.String(), "QUIT\r\n") {
						return false
					}
				}
				return true
			})
			var sawSTARTTLS bool
			for _, w := range wires {
				sent := w.String()
				if !strings.HasSuffix(sent, "\r\n") {
					t.Errorf("the probe sent %q: a partial line", sent)
				}
				for _, line := range strings.Split(strings.TrimSuffix(sent, "\r\n"), "\r\n") {
					if !allowedLine.MatchString(line) {
						t.Errorf("the probe sent %q; only EHLO with a nonce, STARTTLS and QUIT are allowed", line)
					}
					sawSTARTTLS = sawSTARTTLS || line == "STARTTLS"
				}
			}
			if tc.edit == nil && !sawSTARTTLS {
				t.Errorf("no dialog used STARTTLS; the test does not cover it")
			}
		})
	}
}

// smtpVerb matches SMTP commands that send or probe for mail.
var smtpVerb = regexp.MustCompile(`\b(MAIL|RCPT|DATA|BDAT|VRFY|EXPN|AUTH|HELO|RSET|NOOP|ETRN|TURN|ATRN|XCLIENT)\b`)

// writers are the calls that can put bytes on a connection.
var writers = []string{"Write", "WriteString", "WriteTo", "ReadFrom", "Copy", "CopyN", "CopyBuffer",
	"Fprint", "Fprintf", "Fprintln", "WriteByte", "WriteRune", "Flush"}

// TestSourceWritesOnlyThroughClient checks this package's code: no string
// literal names another SMTP verb, and only client.ehlo, client.starttls
// and client.quit call anything that writes.
func TestSourceWritesOnlyThroughClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				if m := smtpVerb.FindString(s); m != "" {
					t.Errorf("%s: string literal %s names the SMTP verb %s", fset.Position(lit.Pos()), lit.Value, m)
				}
			}
			return true
		})
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			allowed := name == "client.go" && fn.Recv != nil && slices.Contains([]string{"ehlo", "starttls", "quit"}, fn.Name.Name)
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if ok && slices.Contains(writers, sel.Sel.Name) && !allowed {
					t.Errorf("%s: %s calls %s; only client.ehlo, client.starttls and client.quit may write", fset.Position(call.Pos()), fn.Name.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if checked < 4 {
		t.Fatalf("checked %d files; is the test in the package directory?", checked)
	}
}
