package chaos

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Line is one line of a log/slog text log (key=value pairs, values with
// spaces quoted as Go strings), the format every OP25B binary writes.
type Line struct {
	Time  time.Time
	Level string
	Msg   string
	Attrs map[string]string
}

// ParseLine parses one text-log line. It reports false for a line that is
// not one (a panic trace, the harness's own markers), so that a log with
// such lines still parses.
func ParseLine(s string) (Line, bool) {
	l := Line{Attrs: map[string]string{}}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return Line{}, false
		}
		key, rest := s[:eq], s[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return Line{}, false
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		if rest != "" && rest[0] != ' ' {
			return Line{}, false
		}
		switch key {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return Line{}, false
			}
			l.Time = t
		case "level":
			l.Level = val
		case "msg":
			l.Msg = val
		default:
			l.Attrs[key] = val
		}
		s = rest
	}
	if l.Time.IsZero() || l.Msg == "" {
		return Line{}, false
	}
	return l, true
}

// ParseLog returns the log lines of r that parse, in order.
func ParseLog(r io.Reader) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l, ok := ParseLine(sc.Text()); ok {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
