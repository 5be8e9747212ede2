package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/op25b/observatory/collector/pgcluster"
)

// database reads the collector's embedded PostgreSQL through its private
// socket directory, which, unlike its 127.0.0.1 listener, is reachable
// from outside the collector's network namespace. Each reading opens its
// own connection: the server's port changes when the collector starts it
// again, and a reading must not hold anything across a fault.
type database struct {
	dir string // the cluster's directory: data/, run/
}

// postmaster returns the pid and port in the cluster's postmaster.pid,
// and whether that process is alive.
func (d database) postmaster() (pid, port int, alive bool) {
	b, err := os.ReadFile(filepath.Join(d.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return pid, port, syscall.Kill(pid, 0) == nil
}

func (d database) conn(ctx context.Context) (*pgx.Conn, error) {
	_, port, alive := d.postmaster()
	if !alive {
		return nil, errors.New("chaos: PostgreSQL is not running")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=op25b dbname=%s sslmode=disable",
		filepath.Join(d.dir, "run"), port, pgcluster.Database))
}

// with runs f on a fresh connection.
func (d database) with(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return f(ctx, c)
}

// lastReceived is when the newest stored result was received.
func (d database) lastReceived(ctx context.Context) (time.Time, error) {
	var t *time.Time
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT max(received_at) FROM results").Scan(&t)
	})
	if t == nil {
		return time.Time{}, err
	}
	return *t, err
}

// receivedBetween counts the results received in [from, to), per agent.
func (d database) receivedBetween(ctx context.Context, from, to time.Time) (map[string]int, error) {
	out := map[string]int{}
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT agent_id, count(*) FROM results WHERE received_at >= $1 AND received_at < $2 GROUP BY agent_id", from, to)
		if err != nil {
			return err
		}
		var agent string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&agent, &n}, func() error { out[agent] = n; return nil })
		return err
	})
	return out, err
}

// freshness is the published rollups' state.
func (d database) freshness(ctx context.Context) (asOf, refreshedAt time.Time, err error) {
	var a, r *time.Time
	err = d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT as_of, refreshed_at FROM agg_state").Scan(&a, &r)
	})
	if a != nil {
		asOf = *a
	}
	if r != nil {
		refreshedAt = *r
	}
	return asOf, refreshedAt, err
}

// rounds returns what is stored of every round.
func (d database) rounds(ctx context.Context) (map[RoundKey]Stored, error) {
	out := map[RoundKey]Stored{}
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT agent_id, round_id, count(*), count(DISTINCT result_id), min(measured_at)
			FROM results GROUP BY agent_id, round_id`)
		if err != nil {
			return err
		}
		var k RoundKey
		var s Stored
		_, err = pgx.ForEachRow(rows, []any{&k.Agent, &k.Round, &s.Rows, &s.Distinct, &s.At}, func() error {
			out[k] = s
			return nil
		})
		return err
	})
	return out, err
}

// openAttributedElsewhere counts the OPEN results measured in [from, to)
// whose address was not taken from a signed statement of the reference
// MTA (its control port's or the probe's): OPEN results carry both, so
// only a collector that could not verify them falls back to the agent's
// connection (issue 10, point 7: an outage of the database must not
// degrade attribution).
func (d database) openAttributedElsewhere(ctx context.Context, from, to time.Time) (int, error) {
	var n int
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM results WHERE measured_at >= $1 AND measured_at < $2
			AND verdict = 1 AND egress_source NOT IN (1, 2)`, from, to).Scan(&n)
	})
	return n, err
}

// lossColumn matches the names of columns that count an agent's losses
// by cause, as issue 10 has the agents report them (op25b.v1.SpoolLoss).
var lossColumn = regexp.MustCompile(`^(spool_)?((lost|loss|dropped)_)?(full|no_space|write_error|corrupt|lost|loss)(_total)?$`)

// reported returns what the collector recorded as lost per agent, and
// which columns it read. It reads per-cause loss counts where the schema
// has them (a table keyed by principal_id or agent_id, or columns of
// principals, whose names lossColumn matches), and principals.spool_dropped
// (the last figure each agent process reported for its full spool) when
// it has nothing else.
func (d database) reported(ctx context.Context) (map[string]int64, string, error) {
	out := map[string]int64{}
	var source string
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
		if err != nil {
			return err
		}
		type table struct {
			key    string
			counts []string
		}
		tables := map[string]*table{}
		var tn, cn, dt string
		_, err = pgx.ForEachRow(rows, []any{&tn, &cn, &dt}, func() error {
			t := tables[tn]
			if t == nil {
				t = &table{}
				tables[tn] = t
			}
			switch {
			case cn == "principal_id" || cn == "agent_id":
				t.key = cn
			case (dt == "bigint" || dt == "integer") && cn != "spool_dropped" && lossColumn.MatchString(cn):
				t.counts = append(t.counts, cn)
			}
			return nil
		})
		if err != nil {
			return err
		}
		var names []string
		for n, t := range tables {
			if t.key != "" && len(t.counts) > 0 && !strings.HasPrefix(n, "agg_") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		var queries []string
		for _, n := range names {
			t := tables[n]
			queries = append(queries, fmt.Sprintf("SELECT %s, sum(%s)::bigint FROM %s GROUP BY 1", t.key,
				strings.Join(t.counts, " + "), pgx.Identifier{n}.Sanitize()))
			source += fmt.Sprintf("%s(%s) ", n, strings.Join(t.counts, "+"))
		}
		if len(queries) == 0 {
			queries = []string{"SELECT principal_id, spool_dropped FROM principals"}
			source = "principals.spool_dropped"
		}
		source = strings.TrimSpace(source)
		for _, q := range queries {
			rows, err := c.Query(ctx, q)
			if err != nil {
				return err
			}
			var id string
			var n *int64
			if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
				if n != nil {
					out[id] += *n
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, source, err
}
