package dataset

import (
	"context"
	"fmt"
	"time"
)

// ReplicaState is what the server the queries read from says of its
// replication.
type ReplicaState struct {
	// Replica: the queries read from a standby in recovery. False when
	// they read from the primary, and when the server WithReplica was given
	// is no standby (it was promoted, or it never was one).
	Replica bool
	// Lag is how far the replica's data are behind the primary's, when
	// LagKnown: zero while it is connected to the primary and has replayed
	// all it received; otherwise the age of the last transaction it
	// replayed. The primary commits a refresh every refresh period, so the
	// age overstates the lag by at most that period, and it grows while the
	// replica is cut off from the primary (from a silent cut only once the
	// replica's wal_receiver_timeout ends the connection). Unknown until the
	// replica has replayed a transaction since it started.
	Lag      time.Duration
	LagKnown bool
}

// replicaSQL reads a standby's state. A WAL receiver that runs and has had
// all it received replayed is caught up: the age of the last replayed
// transaction would only say how long the primary was idle.
// pg_stat_wal_receiver shows a row to every role (its details only to
// pg_read_all_stats), so a read-only role can run it.
const replicaSQL = `SELECT pg_is_in_recovery(),
	CASE WHEN EXISTS (SELECT FROM pg_stat_wal_receiver) AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
		ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 END`

// Replica returns the state of the server the queries read from: the zero
// ReplicaState when that is the primary, without asking it.
func (d *Dataset) Replica(ctx context.Context) (ReplicaState, error) {
	if d.read == d.pool {
		return ReplicaState{}, nil
	}
	var st ReplicaState
	var lag *float64
	if err := d.read.QueryRow(ctx, replicaSQL).Scan(&st.Replica, &lag); err != nil {
		return ReplicaState{}, fmt.Errorf("dataset: replica state: %w", err)
	}
	if st.Replica && lag != nil {
		st.Lag, st.LagKnown = time.Duration(*lag*float64(time.Second)), true
	}
	return st, nil
}
