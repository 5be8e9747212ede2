package verdict

import "testing"

func TestParseRoundTrip(t *testing.T) {
	for _, v := range All {
		got, err := Parse(v.String())
		if err != nil || got != v {
			t.Errorf("Parse(%q) = %v, %v; want %v", v.String(), got, err, v)
		}
	}
	for _, bad := range []string{"", "UNSPECIFIED", "open", "BLOCKED"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded; want error", bad)
		}
	}
}

func TestBlocked(t *testing.T) {
	want := map[Verdict]bool{BlockedTimeout: true, BlockedReset: true, BlockedUnreachable: true}
	for _, v := range All {
		if v.Blocked() != want[v] {
			t.Errorf("%v.Blocked() = %v; want %v", v, v.Blocked(), want[v])
		}
	}
}
