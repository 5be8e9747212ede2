-- 0007: rolling windows that cost what changed (issue 12).
--
-- A rolling window's figures need each agent's counts summed over the
-- window's days. Summing agg_agent_day over 90 days for every key that
-- took a result read the whole history at every refresh. The sums are now
-- kept per window in agg_agent_window and moved by what changed:
--
--   * ingest appends the tally rows it adds to agg_agent_day, the deltas,
--     to agg_delta in the same statement (append-only, no index, so that
--     ingest transactions never wait on each other);
--   * the windows' refresher (collector/dataset, RefreshWindows) deletes
--     the deltas it can see, in one snapshot with the tallies, adds those
--     of days inside each window to agg_agent_window and recomputes the
--     windows of the (asn, family) pairs they touched from these sums;
--   * the first refresh of a new UTC day, and a rebuild, recompute
--     agg_agent_window from agg_agent_day: the windows moved on a day.

CREATE TABLE agg_delta (
    asn                   bigint NOT NULL,
    family                smallint NOT NULL,
    port                  integer NOT NULL,
    day                   date NOT NULL,
    agent_id              text NOT NULL,
    prefix                cidr NOT NULL,
    n_open                integer NOT NULL,
    n_blocked_timeout     integer NOT NULL,
    n_blocked_reset       integer NOT NULL,
    n_blocked_unreachable integer NOT NULL,
    n_intercepted         integer NOT NULL,
    n_tampered            integer NOT NULL,
    n_inconclusive        integer NOT NULL,
    n_charged             integer NOT NULL
);

-- The sums of agg_agent_day over the window_days days ending with
-- agg_state.as_of, one row per key with a tally in them.
CREATE TABLE agg_agent_window (
    window_days           smallint NOT NULL,
    asn                   bigint NOT NULL,
    family                smallint NOT NULL,
    port                  integer NOT NULL,
    agent_id              text NOT NULL,
    prefix                cidr NOT NULL,
    n_open                integer NOT NULL,
    n_blocked_timeout     integer NOT NULL,
    n_blocked_reset       integer NOT NULL,
    n_blocked_unreachable integer NOT NULL,
    n_intercepted         integer NOT NULL,
    n_tampered            integer NOT NULL,
    n_inconclusive        integer NOT NULL,
    n_charged             integer NOT NULL,
    PRIMARY KEY (window_days, asn, family, port, agent_id, prefix)
);

-- When the windows were last refreshed; refreshed_at is now the daily
-- points'. Clearing as_of makes the next refresh of the windows recompute
-- agg_agent_window, which is empty until then.
ALTER TABLE agg_state ADD COLUMN windows_at timestamptz;
UPDATE agg_state SET as_of = NULL;
