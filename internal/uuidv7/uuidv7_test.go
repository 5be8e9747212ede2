package uuidv7

import (
	"testing"
	"time"
)

func TestNewParse(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 123e6, time.UTC)
	id := New(at)
	_, got, err := Parse(id)
	if err != nil {
		t.Fatalf("Parse(%q): %v", id, err)
	}
	if !got.Equal(at) {
		t.Errorf("Parse(%q) time = %v; want %v", id, got, at)
	}
	if New(at) == id {
		t.Errorf("two ids for the same millisecond are equal: %s", id)
	}
	if a, b := New(at), New(at.Add(time.Millisecond)); a >= b {
		t.Errorf("ids do not sort by time: %s >= %s", a, b)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "not-a-uuid", "0190f0c8-8d6b-4c8e-9f00-000000000000", "0190f0c8-8d6b-7c8e-cf00-000000000000", "0190f0c88d6b7c8e9f00000000000000xxxx"} {
		if _, _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded; want error", s)
		}
	}
}
