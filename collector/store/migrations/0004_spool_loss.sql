-- 0004: results agents lost before upload, per agent, that nothing erases.
--
-- An agent counts on disk, by cause, the results its spool could not keep
-- (agent/spool, the LOSS file), under the id of that count, and reports the
-- counts with every upload batch and every schedule poll. A row keeps the
-- highest counts reported for one count of one agent: they only grow, so a
-- report that comes late, twice or lower changes nothing, and a wiped spool
-- directory starts a new count, a new row, instead of erasing the old one.
-- An agent's totals are the sums of its rows.
CREATE TABLE spool_loss (
    agent_id         text NOT NULL REFERENCES principals (principal_id),
    spool_id         text NOT NULL,              -- the count's UUIDv7; '' for agents that report only lost_full since their start
    lost_full        bigint NOT NULL DEFAULT 0,  -- the spool was at its bound
    lost_no_space    bigint NOT NULL DEFAULT 0,  -- the file system was full (ENOSPC, EDQUOT)
    lost_write_error bigint NOT NULL DEFAULT 0,  -- writing to the spool failed otherwise
    lost_corrupt     bigint NOT NULL DEFAULT 0,  -- damaged records cut or skipped
    first_reported_at timestamptz NOT NULL DEFAULT now(),
    increased_at     timestamptz NOT NULL DEFAULT now(),  -- when a count last grew
    PRIMARY KEY (agent_id, spool_id)
);

-- Until now the collector kept the last count of a full spool's drops since
-- the agent's start, overwritten at each batch.
INSERT INTO spool_loss (agent_id, spool_id, lost_full)
    SELECT principal_id, '', spool_dropped FROM principals WHERE spool_dropped > 0;
ALTER TABLE principals DROP COLUMN spool_dropped;
