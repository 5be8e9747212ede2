// Package verdict names the outcomes of a probe. The values and names are the
// contract of DESIGN.md and docs/methodology.md; they match the Verdict enum
// of proto/op25b/v1 number for number and only ever grow at the end.
package verdict

import "fmt"

// Verdict is the outcome of one probe (agent, reference MTA, port, family).
type Verdict uint8

// The verdicts, numbered as in the wire contract.
const (
	Unspecified        Verdict = 0
	Open               Verdict = 1
	BlockedTimeout     Verdict = 2
	BlockedReset       Verdict = 3
	BlockedUnreachable Verdict = 4
	Intercepted        Verdict = 5
	Tampered           Verdict = 6
	Inconclusive       Verdict = 7
)

// All lists every verdict that a probe can produce, in wire order.
var All = []Verdict{Open, BlockedTimeout, BlockedReset, BlockedUnreachable, Intercepted, Tampered, Inconclusive}

var names = [...]string{
	Unspecified:        "UNSPECIFIED",
	Open:               "OPEN",
	BlockedTimeout:     "BLOCKED_TIMEOUT",
	BlockedReset:       "BLOCKED_RESET",
	BlockedUnreachable: "BLOCKED_UNREACHABLE",
	Intercepted:        "INTERCEPTED",
	Tampered:           "TAMPERED",
	Inconclusive:       "INCONCLUSIVE",
}

// String returns the DESIGN.md name, such as "BLOCKED_TIMEOUT".
func (v Verdict) String() string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Parse returns the verdict with the DESIGN.md name s.
func Parse(s string) (Verdict, error) {
	for i, n := range names {
		if n == s && i != int(Unspecified) {
			return Verdict(i), nil
		}
	}
	return Unspecified, fmt.Errorf("verdict: unknown verdict %q", s)
}

// Blocked reports whether v is one of the BLOCKED_* verdicts.
func (v Verdict) Blocked() bool {
	return v == BlockedTimeout || v == BlockedReset || v == BlockedUnreachable
}
