package pgcluster

import "fmt"

// Database is the database the cluster creates for the collector.
const Database = "op25b"

// Options configure Start and Standby.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres; empty means $PG_BINDIR, the
	// newest /usr/lib/postgresql/*/bin, or $PATH.
	BinDir string
	// Port to listen on; 0 picks a free one.
	Port int
	// Settings are extra postgres -c settings, such as "fsync=off" for
	// throwaway test clusters.
	Settings []string
}

// URL is the connection string of the collector's database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://op25b@127.0.0.1:%d/%s?sslmode=disable", c.Port, Database)
}
