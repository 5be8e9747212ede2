package asn

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// replaceFile writes data to path and moves its modification time forward,
// so that a change is visible even where mtimes are coarse.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// lookupASN returns the primary ASN the table attributes to addr, 0 if none.
func lookupASN(tab *Table, addr string) uint32 {
	info, _ := tab.Lookup(netip.MustParseAddr(addr))
	return info.ASN
}

func TestSourceReloadKeepsTableOnBadFile(t *testing.T) {
	good := map[Format][]byte{
		Pfx2as: []byte("192.0.2.0\t24\t64500\n"),
		IP2ASN: []byte("192.0.2.0\t192.0.2.255\t64500\tJP\tOLD\n"),
		MMDB:   buildMMDB(t, 6, []mmdbNetwork{{"192.0.2.0/24", geoLite2(64500, "OLD")}}),
	}
	for _, c := range []struct {
		name   string
		format Format
		bad    []byte
	}{
		{"pfx2as garbage line", Pfx2as, []byte("192.0.2.0\t24\t64501\nGARBAGE\n")},
		{"pfx2as empty", Pfx2as, nil},
		{"ip2asn bad column count", IP2ASN, []byte("192.0.2.0\t192.0.2.255\t64501\tJP\n")},
		{"ip2asn empty", IP2ASN, nil},
		{"mmdb truncated", MMDB, good[MMDB][:len(good[MMDB])/2]},
		{"mmdb empty", MMDB, nil},
	} {
		for _, f := range []Format{c.format, Detect} {
			t.Run(c.name+" "+f.String(), func(t *testing.T) {
				path := writeFile(t, "snapshot", good[c.format])
				src, err := NewSource(testLogger(t), f, path)
				if err != nil {
					t.Fatal(err)
				}
				old := src.Current()

				replaceFile(t, path, c.bad)
				if err := src.Reload(); err == nil {
					t.Fatal("Reload() of a bad file = nil; want an error")
				}
				if src.Current() != old {
					t.Error("Current() changed after a failed reload")
				}
				if as := lookupASN(src.Current(), "192.0.2.1"); as != 64500 {
					t.Errorf("after a failed reload, Lookup(192.0.2.1) = AS%d; want AS64500 from the previous table", as)
				}
				if st := src.Stats(); st.Failures != 1 || st.Reloads != 0 || st.LastError == "" {
					t.Errorf("Stats() = %+v; want 1 failure with its error", st)
				}
			})
		}
	}
}

func TestSourceReload(t *testing.T) {
	path := writeFile(t, "rv2.pfx2as", []byte("192.0.2.0\t24\t64500\n"))
	src, err := NewSource(nil, Detect, path)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, []byte("GARBAGE\n"))
	if err := src.Reload(); err == nil {
		t.Fatal("Reload() of garbage = nil; want an error")
	}
	replaceFile(t, path, []byte("192.0.2.0\t24\t64501\n"))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if as := lookupASN(src.Current(), "192.0.2.1"); as != 64501 {
		t.Errorf("after Reload, Lookup(192.0.2.1) = AS%d; want AS64501", as)
	}
	if st := src.Stats(); st != (Stats{Reloads: 1, Failures: 1}) {
		t.Errorf("Stats() = %+v; want 1 reload, 1 failure, no last error", st)
	}
}

func TestNewSourceFails(t *testing.T) {
	path := writeFile(t, "rv2.pfx2as", []byte("GARBAGE\n"))
	if src, err := NewSource(nil, Detect, path); err == nil {
		t.Fatalf("NewSource(garbage) = %v, nil; want an error", src)
	}
}

// TestSourceWatch counts polls on the fake clock of testing/synctest: a
// change is loaded once it has held for a whole interval, a broken file
// is tried once however many polls see it, and a fixed one is loaded.
func TestSourceWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = time.Minute
		v4 := writeFile(t, "rv2.pfx2as", []byte("192.0.2.0\t24\t64500\n"))
		v6 := writeFile(t, "rv6.pfx2as", []byte("2001:db8::\t32\t64600\n"))
		src, err := NewSource(testLogger(t), Pfx2as, v4, v6)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- src.Watch(ctx, every) }()
		synctest.Wait()
		// polls lets n polls happen and waits until Watch is idle again.
		polls := func(n int) {
			for range n {
				time.Sleep(every)
				synctest.Wait()
			}
		}

		replaceFile(t, v6, []byte("2001:db8::\t32\t64601\n"))
		polls(1)
		if as := lookupASN(src.Current(), "2001:db8::1"); as != 64600 {
			t.Errorf("one poll after the change, Lookup(2001:db8::1) = AS%d; want AS64600 until the change held for an interval", as)
		}
		polls(1)
		if as := lookupASN(src.Current(), "2001:db8::1"); as != 64601 {
			t.Errorf("two polls after the change, Lookup(2001:db8::1) = AS%d; want AS64601", as)
		}
		if as := lookupASN(src.Current(), "192.0.2.1"); as != 64500 {
			t.Errorf("after reload, Lookup(192.0.2.1) = AS%d; want AS64500", as)
		}

		// A broken file: the previous table stays, and the failure is
		// counted once however many polls see the same broken file.
		replaceFile(t, v4, []byte("192.0.2.0\t24\n"))
		polls(2)
		if st := src.Stats(); st.Failures != 1 {
			t.Errorf("two polls after a broken file, Stats() = %+v; want 1 failure", st)
		}
		polls(10)
		if st := src.Stats(); st.Failures != 1 || st.Reloads != 1 {
			t.Errorf("twelve polls after a broken file, Stats() = %+v; want 1 reload and 1 failure", st)
		}
		if as := lookupASN(src.Current(), "2001:db8::1"); as != 64601 {
			t.Errorf("after a failed reload, Lookup(2001:db8::1) = AS%d; want AS64601", as)
		}

		// Fixed in place: picked up again.
		replaceFile(t, v4, []byte("192.0.2.0\t24\t64502\n"))
		polls(2)
		if as := lookupASN(src.Current(), "192.0.2.1"); as != 64502 {
			t.Errorf("two polls after the fix, Lookup(192.0.2.1) = AS%d; want AS64502", as)
		}

		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch() = %v; want context.Canceled", err)
		}
		if err := src.Watch(t.Context(), 0); err == nil {
			t.Error("Watch(0) = nil; want an error")
		}
	})
}

// TestSourceConcurrentLookups runs lookups during reloads, for the race
// detector: the read path takes no lock.
func TestSourceConcurrentLookups(t *testing.T) {
	path := writeFile(t, "rv2.pfx2as", []byte("192.0.2.0\t24\t64500\n"))
	src, err := NewSource(nil, Pfx2as, path)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if as := lookupASN(src.Current(), "192.0.2.1"); as != 64500 {
					t.Errorf("Lookup(192.0.2.1) = AS%d during reloads; want AS64500", as)
					return
				}
			}
		})
	}
	for range 20 {
		if err := src.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
