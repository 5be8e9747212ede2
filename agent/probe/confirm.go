package probe

import (
	"fmt"
	"strings"

	"github.com/op25b/observatory/internal/verdict"
)

// Confirmation (docs/methodology.md, "Confirmation"): one attempt can be
// unlucky (a lost SYN, a stall on a lossy line, our reference MTA busy),
// so a verdict other than OPEN is repeated with a fresh nonce before it is
// reported, and the result keeps every attempt.

// settled reports whether the attempts so far decide the probe: the last
// one reached our MTA unmodified (OPEN needs no confirmation: it rests on
// a signed statement), or need attempts agree, or a repeat cannot change
// anything.
func settled(as []Attempt, need int) bool {
	last := as[len(as)-1]
	switch {
	case last.Verdict == verdict.Open, last.Failure == FailurePortNotServed:
		return true
	case last.Verdict == verdict.Inconclusive:
		return false
	}
	n := 0
	for _, a := range as {
		if a.Verdict == last.Verdict {
			n++
		}
	}
	return n >= need
}

// conclude returns the verdict of a probe from its attempts, and the index
// of the attempt whose evidence the result carries:
//
//   - an OPEN attempt makes the probe OPEN, unless another attempt showed
//     positive evidence of a third party (INTERCEPTED, TAMPERED): the path
//     behaved two ways, and the probe is INCONCLUSIVE (inconsistent);
//   - otherwise a verdict that need attempts agree on is the probe's;
//   - otherwise, with no conclusive attempt, the last attempt's
//     INCONCLUSIVE stands (its failure says why);
//   - otherwise the probe is INCONCLUSIVE (unconfirmed).
func conclude(as []Attempt, need int) (int, outcome) {
	open, third := -1, -1
	count := make(map[verdict.Verdict]int)
	lastOf := make(map[verdict.Verdict]int)
	lastConclusive := -1
	for i, a := range as {
		switch a.Verdict {
		case verdict.Open:
			if open < 0 {
				open = i
			}
		case verdict.Intercepted, verdict.Tampered:
			third = i
		}
		if a.Verdict != verdict.Inconclusive {
			count[a.Verdict]++
			lastOf[a.Verdict] = i
			lastConclusive = i
		}
	}
	switch {
	case open >= 0 && third >= 0:
		return third, outcome{verdict.Inconclusive, FailureInconsistent, fmt.Sprintf(
			"the attempts disagree: %s; one reached the reference MTA unmodified, another showed %s (%s)",
			summary(as), as[third].Verdict, as[third].Detail)}
	case open >= 0:
		return open, outcome{verdict.Open, "", as[open].Detail + after(as, open)}
	}
	for _, v := range verdict.All {
		if n := count[v]; n >= need && v != verdict.Inconclusive {
			i := lastOf[v]
			detail := as[i].Detail
			if need > 1 {
				detail = fmt.Sprintf("%s (confirmed by %d of %d attempts)", detail, n, len(as))
			}
			return i, outcome{v, as[i].Failure, detail}
		}
	}
	if lastConclusive < 0 {
		i := len(as) - 1
		return i, outcome{as[i].Verdict, as[i].Failure, as[i].Detail + after(as, i)}
	}
	return lastConclusive, outcome{verdict.Inconclusive, FailureUnconfirmed, fmt.Sprintf(
		"no verdict was confirmed by a second attempt: %s", summary(as))}
}

// summary lists the attempts' verdicts and failures, in order.
func summary(as []Attempt) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.Verdict.String()
		if a.Failure != "" {
			parts[i] += " (" + a.Failure + ")"
		}
	}
	return "attempts " + strings.Join(parts, ", ")
}

// after tells which attempt the detail is from, when it is not the only one.
func after(as []Attempt, i int) string {
	if len(as) == 1 {
		return ""
	}
	return fmt.Sprintf(" (attempt %d of %d; %s)", i+1, len(as), summary(as))
}
