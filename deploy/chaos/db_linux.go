package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// lossSource names what reported reads, for the report.
const lossSource = "spool_loss (lost_full + lost_no_space + lost_write_error + lost_corrupt)"

// reported returns what the collector recorded as lost per agent: the
// sums of the per-cause counts the agents report (migration 0004), over
// every spool each agent has had.
func (d database) reported(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := d.with(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT agent_id, sum(lost_full + lost_no_space + lost_write_error + lost_corrupt)::bigint
			FROM spool_loss GROUP BY 1`)
		if err != nil {
			return err
		}
		var id string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			out[id] += n
			return nil
		})
		return err
	})
	return out, err
}
