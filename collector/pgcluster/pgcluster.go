//go:build unix

// Package pgcluster runs a private PostgreSQL cluster from the locally
// installed server binaries: the collector's embedded default when no
// DATABASE_URL is given, and the real database of integration tests.
//
// The cluster lives in one directory (data, socket, log). One process at
// a time owns the server, the one that started it or took it over: it holds
// a lock on owner.lock, which the kernel releases however the process
// ends, and stops the server in Stop. Others that Start on the directory
// meanwhile attach to the server and leave it running. A server whose
// owner died (SIGKILL) is taken over by the next Start. It listens on
// 127.0.0.1 only, on a free port, with trust authentication limited to that
// address and to its private socket directory. PostgreSQL refuses to run as
// root, so when the caller is root the cluster runs as an unprivileged
// system user ("postgres" if it exists, else "nobody") that owns the
// directory. Standby copies a running cluster into a streaming replica of
// it (pg_basebackup), for the tests of reads from a replica.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a running private PostgreSQL cluster.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	cred *syscall.Credential
	// attached is true when another live process owns the server: Stop
	// leaves it running.
	attached bool
	// owner holds the lock on owner.lock while this process owns the
	// server.
	owner *os.File
	// Adopted is true when Start found the server left running by an
	// owner that died, and took it over.
	Adopted bool
	// settings are the -c settings the server was started with, for
	// Restart and Supervise.
	settings []string
}

// FindBinDir locates the PostgreSQL server binaries.
func FindBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries found (install the Debian package postgresql, set PG_BINDIR, or give DATABASE_URL)")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start initialises dir if it holds no cluster yet, starts the server and
// creates Database. Stop it with Stop.
func Start(ctx context.Context, dir string, o Options) (*Cluster, error) {
	bin := o.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Port: o.Port, bin: bin, settings: o.Settings}
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	// Serialise with other processes starting the same cluster (a
	// collector and an operator's `token create`): one initialises and
	// starts it, the others attach.
	lock, err := os.OpenFile(filepath.Join(dir, "start.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("pgcluster: lock %s: %w", dir, err)
	}
	if c.cred != nil {
		if err := chownTree(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if out, err := c.run(ctx, "initdb", "-D", filepath.Join(dir, "data"), "-U", "op25b",
			"--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-instructions"); err != nil {
			return nil, fmt.Errorf("pgcluster: initdb: %w: %s", err, out)
		}
		// Replication connections too ("all" does not cover them), so
		// that Standby can copy the cluster with pg_basebackup.
		hba := "local all all trust\nhost all all 127.0.0.1/32 trust\n" +
			"local replication all trust\nhost replication all 127.0.0.1/32 trust\n"
		if err := os.WriteFile(filepath.Join(dir, "data", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
		if c.cred != nil {
			os.Chown(filepath.Join(dir, "data", "pg_hba.conf"), int(c.cred.Uid), int(c.cred.Gid))
		}
	}
	if port, ok := running(filepath.Join(dir, "data")); ok {
		c.Port = port
		if err := c.own(); err != nil {
			return nil, err
		}
		// When another live process (a running collector) owns the
		// server, use it as `op25b-collector token create` does next to
		// a running one. Else its owner died without stopping it: this
		// process owns it now.
		c.Adopted = !c.attached
		return c, nil
	}
	if err := c.start(ctx, o.Settings); err != nil {
		return nil, err
	}
	if out, err := c.run(ctx, "psql", "-h", c.socketDir(), "-p", strconv.Itoa(c.Port), "-U", "op25b", "-d", "postgres",
		"-tAc", "SELECT 1 FROM pg_database WHERE datname = '"+Database+"'"); err != nil {
		c.Stop()
		return nil, fmt.Errorf("pgcluster: psql: %w: %s", err, out)
	} else if strings.TrimSpace(out) != "1" {
		if out, err := c.run(ctx, "createdb", "-h", c.socketDir(), "-p", strconv.Itoa(c.Port), "-U", "op25b", Database); err != nil {
			c.Stop()
			return nil, fmt.Errorf("pgcluster: createdb: %w: %s", err, out)
		}
	}
	return c, nil
}

// Standby makes dir a streaming replica of c with pg_basebackup -R
// (unless dir already holds a cluster), starts it on its own port (o.Port,
// 0 picks a free one) with o.Settings (nil: those c was started with), and
// returns once it accepts read-only connections. The standby follows c over
// a replication connection to 127.0.0.1 and answers queries on the same
// databases, read-only; its URL names the collector's database. This
// process owns it: Stop it with Stop, before c. c must have been
// initialised by a Start that allows replication connections (every
// cluster made since Standby exists).
func (c *Cluster) Standby(ctx context.Context, dir string, o Options) (*Cluster, error) {
	bin := o.BinDir
	if bin == "" {
		bin = c.bin
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Cluster{Dir: dir, Port: o.Port, bin: bin, cred: c.cred, settings: o.Settings}
	if s.settings == nil {
		s.settings = c.settings
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if s.cred != nil {
		if err := chownTree(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		// -R writes standby.signal and primary_conninfo; -X stream copies
		// the WAL written during the copy, so the standby starts consistent.
		if out, err := s.run(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "op25b",
			"-D", filepath.Join(dir, "data"), "-R", "-X", "stream", "-c", "fast", "-w"); err != nil {
			return nil, fmt.Errorf("pgcluster: pg_basebackup: %w: %s", err, out)
		}
	}
	// pg_ctl -w returns once a standby accepts read-only connections.
	if err := s.start(ctx, s.settings); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Cluster) start(ctx context.Context, settings []string) error {
	if c.Port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("pgcluster: pick a port: %w", err)
		}
		c.Port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	opts := []string{"-p", strconv.Itoa(c.Port), "-k", c.socketDir(), "-c", "listen_addresses=127.0.0.1"}
	for _, s := range settings {
		opts = append(opts, "-c", s)
	}
	out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "postgres.log"),
		"-w", "-t", "60", "-o", strings.Join(opts, " "), "start")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl start: %w: %s (see %s)", err, out, filepath.Join(c.Dir, "postgres.log"))
	}
	return c.own()
}

// own takes the owner's lock if no live process holds it; else the
// cluster is attached. The lock's descriptor is closed on exec, so the
// server itself never holds it.
func (c *Cluster) own() error {
	if c.owner != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, "owner.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case err == nil:
		c.owner, c.attached = f, false
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		c.attached = true
	default:
		f.Close()
		return fmt.Errorf("pgcluster: lock %s: %w", f.Name(), err)
	}
	return nil
}

// Stop stops the server (fast shutdown: sessions are disconnected,
// committed data is safe) when this process owns it, and gives up the
// ownership.
func (c *Cluster) Stop() error {
	if c.attached {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop: %w: %s", err, out)
	}
	c.owner.Close()
	c.owner = nil
	return nil
}

// Restart starts a stopped cluster again on the same port, with settings
// if given, else with those it was started with.
func (c *Cluster) Restart(ctx context.Context, settings ...string) error {
	if settings == nil {
		settings = c.settings
	}
	return c.start(ctx, settings)
}

// Supervise restarts the server whenever it crashed, until ctx is done:
// every period it looks for a postmaster.pid whose process is gone (the
// postmaster was killed, or died), and starts the server again on the
// same port; PostgreSQL's crash recovery replays what was committed. A
// server stopped cleanly by someone else (pg_ctl stop removes
// postmaster.pid) is left stopped: an operator may be working on it.
// Supervise does nothing in a process that only attached to the server.
// report is told of each restart and each failed attempt (retried at the
// next period: a killed postmaster's last backends hold its shared memory
// for a moment). Stop ctx before calling Stop.
func (c *Cluster) Supervise(ctx context.Context, period time.Duration, report func(err error)) {
	if c.attached {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.crashed() {
			continue
		}
		err := c.start(ctx, c.settings)
		if ctx.Err() != nil {
			return
		}
		report(err)
	}
}

// crashed reports whether the server's postmaster.pid names a process
// that is gone.
func (c *Cluster) crashed() bool {
	data := filepath.Join(c.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return false
	}
	_, ok := running(data)
	return !ok
}

// running reports whether a live server owns data, and its port, from
// postmaster.pid (line 1: pid, line 4: port).
func running(data string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err1 != nil || err2 != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return port, true
}

func (c *Cluster) socketDir() string { return filepath.Join(c.Dir, "run") }

func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	path := filepath.Join(c.bin, name)
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath(name); err == nil {
			path = p
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// unprivileged returns the credentials of the user the cluster runs as
// when the caller is root.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgcluster: running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as")
}

// chownTree gives dir to the cluster's user, and makes every parent
// directory traversable, since PostgreSQL must reach its data directory.
func chownTree(dir string, uid, gid int) error {
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("pgcluster: chown %s: %w", dir, err)
	}
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pgcluster: make %s traversable: %w", p, err)
			}
		}
	}
	return nil
}
