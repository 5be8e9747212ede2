package ratelimit

import (
	"net"
	"testing"
	"time"
)

// capped is a Listener on loopback whose accepted connections arrive on a
// channel.
type capped struct {
	*Listener
	accepted chan net.Conn
}

func listenCapped(t *testing.T, max, perSource int) *capped {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &capped{NewListener(inner, max, perSource), make(chan net.Conn, 16)}
	t.Cleanup(func() { c.Close() })
	go func() {
		for {
			conn, err := c.Accept()
			if err != nil {
				return
			}
			c.accepted <- conn
		}
	}()
	return c
}

// dial connects from the loopback address local and returns the server's
// side of the connection when the listener kept it (it reached Accept's
// caller), or nil when it refused it (a refusal was counted).
func (c *capped) dial(t *testing.T, local string) net.Conn {
	t.Helper()
	before := c.Stats()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case sc := <-c.accepted:
			t.Cleanup(func() { sc.Close() })
			return sc
		case <-time.After(time.Millisecond):
		}
		if st := c.Stats(); st.RefusedAll+st.RefusedSource > before.RefusedAll+before.RefusedSource {
			return nil
		}
	}
	t.Fatalf("connection from %s neither kept nor refused", local)
	return nil
}

func TestListenerCaps(t *testing.T) {
	ln := listenCapped(t, 3, 2)
	var kept []bool
	for _, local := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		kept = append(kept, ln.dial(t, local) != nil)
	}
	// Two from 127.0.0.1 (its cap), one from 127.0.0.2 (the third of
	// three in all), none from 127.0.0.3 (all taken).
	if want := []bool{true, true, false, true, false}; !equal(kept, want) {
		t.Errorf("connections kept = %v; want %v (2 per source, 3 in all)", kept, want)
	}
	if st := ln.Stats(); st.Open != 3 || st.RefusedSource != 1 || st.RefusedAll != 1 {
		t.Errorf("stats = %+v; want 3 open, 1 refused per source, 1 refused in all", st)
	}
}

func TestListenerGivesSlotsBack(t *testing.T) {
	ln := listenCapped(t, 1, 1)
	first := ln.dial(t, "127.0.0.1")
	if first == nil {
		t.Fatal("first connection refused")
	}
	if ln.dial(t, "127.0.0.2") != nil {
		t.Fatal("a second connection over a cap of 1 was kept")
	}
	first.Close()
	first.Close() // a second Close must not give a second slot
	if ln.dial(t, "127.0.0.2") == nil {
		t.Errorf("the slot of a closed connection was not given back")
	}
	if st := ln.Stats(); st.Open != 1 {
		t.Errorf("open = %d; want 1", st.Open)
	}
}
