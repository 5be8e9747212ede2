//go:build !unix

package pgcluster

import (
	"context"
	"errors"
	"time"
)

// errUnsupported: the embedded cluster needs Unix (file locks, process
// credentials, a Unix socket directory). The agent, which runs everywhere,
// never starts one; this file lets the packages whose tests do compile.
var errUnsupported = errors.New("pgcluster: the embedded PostgreSQL cluster runs on Linux and other Unix systems only; give DATABASE_URL")

// Cluster is a running private PostgreSQL cluster; never on this platform.
type Cluster struct {
	Dir     string
	Port    int
	Adopted bool
}

// FindBinDir fails on this platform.
func FindBinDir() (string, error) { return "", errUnsupported }

// Start fails on this platform.
func Start(context.Context, string, Options) (*Cluster, error) { return nil, errUnsupported }

// Standby fails on this platform.
func (c *Cluster) Standby(context.Context, string, Options) (*Cluster, error) {
	return nil, errUnsupported
}

// Stop does nothing on this platform.
func (c *Cluster) Stop() error { return nil }

// Restart fails on this platform.
func (c *Cluster) Restart(context.Context, ...string) error { return errUnsupported }

// Supervise does nothing on this platform.
func (c *Cluster) Supervise(context.Context, time.Duration, func(error)) {}
