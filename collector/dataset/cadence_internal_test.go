package dataset

import (
	"testing"
	"time"
)

// TestWindowsDue: the windows are refreshed at the first tick windowsEvery
// after their last refresh, which was stamped a little after its own tick;
// with equal cadences at every tick; and at the first tick of a new day.
func TestWindowsDue(t *testing.T) {
	tick := time.Date(2026, 3, 12, 9, 0, 0, 0, time.UTC)
	stamped := tick.Add(800 * time.Millisecond) // the refresh of that tick ended then
	for _, c := range []struct {
		every, windowsEvery time.Duration
		ticks               int // after the stamped tick
		due                 bool
	}{
		{time.Minute, 15 * time.Minute, 1, false},
		{time.Minute, 15 * time.Minute, 14, false},
		{time.Minute, 15 * time.Minute, 15, true},
		{10 * time.Second, 10 * time.Second, 1, true},
		{time.Second, time.Second, 1, true},
		{time.Minute, 2 * time.Minute, 1, false},
		{time.Minute, 2 * time.Minute, 2, true},
	} {
		now := tick.Add(time.Duration(c.ticks) * c.every).Add(5 * time.Millisecond)
		if got := windowsDue(RefreshStats{WindowsAt: stamped}, now, c.every, c.windowsEvery); got != c.due {
			t.Errorf("every %s, windows every %s, %d ticks after their refresh: due %v; want %v", c.every, c.windowsEvery, c.ticks, got, c.due)
		}
	}
	if !windowsDue(RefreshStats{WindowsAt: stamped, WindowsDue: true}, tick.Add(time.Minute), time.Minute, 15*time.Minute) {
		t.Errorf("the first tick of a new day did not refresh the windows")
	}
	if !windowsDue(RefreshStats{}, tick, time.Minute, 15*time.Minute) {
		t.Errorf("windows never refreshed are not due")
	}
}
