package sighting

import (
	"fmt"
	"testing"
)

func TestQueueBoundedAndOrdered(t *testing.T) {
	q := NewQueue(3)
	for i := 0; i < 5; i++ {
		q.Add(Sighting{ID: fmt.Sprint(i)})
	}
	if q.Len() != 3 || q.Dropped() != 2 {
		t.Fatalf("after 5 adds to a queue of 3: len %d dropped %d; want 3 and 2", q.Len(), q.Dropped())
	}
	got := ids(q.Peek(10))
	if got != "2,3,4," {
		t.Errorf("Peek = %s; want the newest three in order 2,3,4,", got)
	}
	q.Remove(map[string]bool{"3": true})
	if got := ids(q.Peek(10)); got != "2,4," {
		t.Errorf("after Remove(3): %s; want 2,4,", got)
	}
	q.Add(Sighting{ID: "5"})
	q.Add(Sighting{ID: "6"})
	if got := ids(q.Peek(2)); got != "4,5," || q.Dropped() != 3 {
		t.Errorf("Peek(2) = %s dropped %d; want 4,5, and 3", got, q.Dropped())
	}
}

func ids(ss []Sighting) string {
	var out string
	for _, s := range ss {
		out += s.ID + ","
	}
	return out
}
