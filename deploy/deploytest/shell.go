package deploytest

import (
	"fmt"
	"strings"
)

// SimpleCommand is one command of a shell text: its leading variable
// assignments and its words, quotes removed. Command substitutions and
// variables are kept as written ("$(cat token)").
type SimpleCommand struct {
	Line int // line of the text where it starts, from 1
	Env  []string
	Argv []string
}

// ShellCommands splits shell text, such as a code block of a guide or a
// script, into simple commands: lines joined at a trailing backslash,
// comments removed, split at | || && ; & ( ) and newlines, redirections
// and their targets dropped. It understands quotes and $(...), not
// control flow: the words of `for`, `if` and here-documents come out as
// commands of their own, which matters only if they name our programs.
func ShellCommands(text string) ([]SimpleCommand, error) {
	var out []SimpleCommand
	var cur SimpleCommand
	var word strings.Builder
	inWord := false
	line := 1
	skipNext := false // the next word is a redirection's target
	flushWord := func() {
		if !inWord {
			return
		}
		w := word.String()
		word.Reset()
		inWord = false
		if skipNext {
			skipNext = false
			return
		}
		if len(cur.Argv) == 0 && isAssignment(w) {
			cur.Env = append(cur.Env, w)
			return
		}
		cur.Argv = append(cur.Argv, w)
	}
	flushCommand := func() {
		flushWord()
		if len(cur.Argv) > 0 || len(cur.Env) > 0 {
			out = append(out, cur)
		}
		cur = SimpleCommand{}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if cur.Line == 0 && len(cur.Argv) == 0 && len(cur.Env) == 0 && !inWord {
			cur.Line = line
		}
		switch {
		case c == '\\' && i+1 < len(text) && text[i+1] == '\n':
			i++
			line++
		case c == '\\' && i+1 < len(text):
			word.WriteByte(text[i+1])
			inWord = true
			i++
		case c == '\'':
			j := strings.IndexByte(text[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated '", line)
			}
			word.WriteString(text[i+1 : i+1+j])
			line += strings.Count(text[i+1:i+1+j], "\n")
			inWord = true
			i += j + 1
		case c == '"':
			j := i + 1
			for ; j < len(text) && text[j] != '"'; j++ {
				if text[j] == '\\' && j+1 < len(text) {
					j++
					word.WriteByte(text[j])
					continue
				}
				if text[j] == '$' && j+1 < len(text) && text[j+1] == '(' {
					k, err := closeParen(text, j+1)
					if err != nil {
						return nil, fmt.Errorf("line %d: %v", line, err)
					}
					word.WriteString(text[j : k+1])
					j = k
					continue
				}
				if text[j] == '\n' {
					line++
				}
				word.WriteByte(text[j])
			}
			if j >= len(text) {
				return nil, fmt.Errorf("line %d: unterminated \"", line)
			}
			inWord = true
			i = j
		case c == '$' && i+1 < len(text) && text[i+1] == '(':
			k, err := closeParen(text, i+1)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", line, err)
			}
			word.WriteString(text[i : k+1])
			inWord = true
			i = k
		case c == '#' && !inWord:
			for i < len(text) && text[i] != '\n' {
				i++
			}
			i--
		case c == '\n':
			flushCommand()
			line++
		case c == ' ' || c == '\t':
			flushWord()
		case c == '|' || c == ';' || c == '(' || c == ')':
			flushCommand()
			if i+1 < len(text) && text[i+1] == c {
				i++
			}
		case c == '&':
			if i+1 < len(text) && text[i+1] == '>' { // &> file
				flushWord()
				skipNext = true
				i++
				continue
			}
			flushCommand()
			if i+1 < len(text) && text[i+1] == '&' {
				i++
			}
		case c == '>' || c == '<':
			// 2>&1, >file, >> file, <<EOF: drop the operator and its target.
			w := word.String()
			if inWord && strings.Trim(w, "0123456789") == "" {
				word.Reset()
				inWord = false
			} else {
				flushWord()
			}
			for i+1 < len(text) && (text[i+1] == '>' || text[i+1] == '<' || text[i+1] == '&') {
				i++
			}
			if i+1 < len(text) && text[i+1] >= '0' && text[i+1] <= '9' && text[i] == '&' {
				i++
				continue
			}
			skipNext = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	flushCommand()
	return out, nil
}

// closeParen returns the index of the parenthesis closing the one at open.
func closeParen(text string, open int) (int, error) {
	depth := 0
	for k := open; k < len(text); k++ {
		switch text[k] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return k, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated $(")
}

func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
