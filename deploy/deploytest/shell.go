package deploytest

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// SimpleCommand is one command of a shell text: its leading variable
// assignments and its words, quotes removed. Parameter expansions and
// command substitutions are kept as written ("$(cat token)").
type SimpleCommand struct {
	Line int // line of the text where it starts, from 1
	Env  []string
	Argv []string
}

// ShellCommands parses shell text, such as a code block of a guide or a
// script, as bash does (mvdan.cc/sh) and returns its simple commands in
// the order they appear: those of pipelines, lists, loops and conditions,
// and those inside command substitutions. Redirections are not part of a
// command.
func ShellCommands(text string) ([]SimpleCommand, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(text), "")
	if err != nil {
		return nil, err
	}
	var out []SimpleCommand
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		c := SimpleCommand{Line: int(call.Pos().Line())}
		for _, a := range call.Assigns {
			v := ""
			if a.Value != nil {
				v = wordText(a.Value)
			}
			c.Env = append(c.Env, a.Name.Value+"="+v)
		}
		for _, w := range call.Args {
			c.Argv = append(c.Argv, wordText(w))
		}
		out = append(out, c)
		return true
	})
	return out, nil
}

// wordText returns a word as the command receives it when it holds only
// literal text, quotes and escapes removed; expansions stay as written.
func wordText(w *syntax.Word) string {
	var b strings.Builder
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			b.WriteString(unescape(p.Value, ""))
		case *syntax.SglQuoted:
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				if lit, ok := q.(*syntax.Lit); ok {
					b.WriteString(unescape(lit.Value, "$`\"\\\n"))
				} else {
					b.WriteString(source(q))
				}
			}
		default:
			b.WriteString(source(p))
		}
	}
	return b.String()
}

// unescape removes the backslashes of text that escape a character of
// special (any character when special is empty, as outside quotes).
func unescape(text, special string) string {
	if !strings.Contains(text, `\`) {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		if text[i] == '\\' && i+1 < len(text) && (special == "" || strings.IndexByte(special, text[i+1]) >= 0) {
			i++
		}
		b.WriteByte(text[i])
	}
	return b.String()
}

// source prints a node as shell source.
func source(n syntax.Node) string {
	var b strings.Builder
	syntax.NewPrinter(syntax.Minify(true)).Print(&b, n)
	return b.String()
}
