package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/store"
)

func TestPrintSummary(t *testing.T) {
	var b bytes.Buffer
	err := printSummary(&b, []store.VerdictCount{
		{ASN: 64500, Name: "EXAMPLE", Country: "JP", Family: 4, Port: 25, Verdict: 1, Results: 2, Agents: 1},
		{ASN: 64500, Name: "EXAMPLE", Country: "JP", Family: 4, Port: 25, Verdict: 2, Results: 5, Agents: 3},
		{ASN: 0, Family: 6, Port: 465, Verdict: 7, Results: 1, Agents: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"AS64500 EXAMPLE (JP)  IPv4    25    7        3       OPEN 2, BLOCKED_TIMEOUT 5", "unknown               IPv6    465   1        1       INCONCLUSIVE 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}
