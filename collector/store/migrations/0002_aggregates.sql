-- 0002: the rollups behind the published dataset (collector/dataset).
--
-- Everything here is derived from results and can be rebuilt from it
-- (`op25b-collector rebuild`). Ingest maintains agg_agent_day and
-- agg_evidence in the transaction that stores the results and appends the
-- (asn, family, day) keys it touched to agg_dirty; the refresher recomputes
-- the derived tables for those keys.

-- What an intercepting or tampering middlebox showed the probe (a foreign
-- banner or certificate subject), address literals redacted at ingest.
ALTER TABLE results ADD COLUMN public_evidence text NOT NULL DEFAULT '';

-- Tallies of one agent's results per UTC day, ASN, family, port and /24 or
-- /48 prefix, one column per verdict. Sums of these are exact for any span
-- of days.
CREATE TABLE agg_agent_day (
    asn                   bigint NOT NULL,
    family                smallint NOT NULL,
    port                  integer NOT NULL,
    day                   date NOT NULL,
    agent_id              text NOT NULL,
    prefix                cidr NOT NULL,
    n_open                integer NOT NULL DEFAULT 0,
    n_blocked_timeout     integer NOT NULL DEFAULT 0,
    n_blocked_reset       integer NOT NULL DEFAULT 0,
    n_blocked_unreachable integer NOT NULL DEFAULT 0,
    n_intercepted         integer NOT NULL DEFAULT 0,
    n_tampered            integer NOT NULL DEFAULT 0,
    n_inconclusive        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (asn, family, port, day, agent_id, prefix)
);
CREATE INDEX ON agg_agent_day (day);

-- Keys whose derived rows are stale. Append-only without a key, so that an
-- ingest transaction never waits on another: the refresher deletes what it
-- has read, and marks committed later stay for its next run.
CREATE TABLE agg_dirty (
    asn    bigint NOT NULL,
    family smallint NOT NULL,
    day    date NOT NULL
);

CREATE TABLE agg_evidence (
    asn        bigint NOT NULL,
    family     smallint NOT NULL,
    port       integer NOT NULL,
    verdict    smallint NOT NULL,
    text       text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    results    bigint NOT NULL,
    PRIMARY KEY (asn, family, port, verdict, text)
);

-- Derived per port: window_days = 0 is one UTC day (day), the timeline;
-- window_days = N is the rolling window of N days ending with day (the
-- as_of day of agg_state). port = 0 carries the ASN-level distinct counts.
-- p_* count prefixes by their majority verdict.
CREATE TABLE agg_port (
    window_days           smallint NOT NULL,
    asn                   bigint NOT NULL,
    family                smallint NOT NULL,
    day                   date NOT NULL,
    port                  integer NOT NULL,
    agents                integer NOT NULL,
    prefixes              integer NOT NULL,
    results               bigint NOT NULL,
    p_open                integer NOT NULL,
    p_blocked_timeout     integer NOT NULL,
    p_blocked_reset       integer NOT NULL,
    p_blocked_unreachable integer NOT NULL,
    p_intercepted         integer NOT NULL,
    p_tampered            integer NOT NULL,
    PRIMARY KEY (window_days, asn, family, day, port)
);

-- The policy class of an ASN and family, in the same spans as agg_port.
CREATE TABLE agg_class (
    window_days smallint NOT NULL,
    asn         bigint NOT NULL,
    family      smallint NOT NULL,
    day         date NOT NULL,
    class       smallint NOT NULL,          -- op25b.v1.PolicyClass
    agents      integer NOT NULL,
    prefixes    integer NOT NULL,
    blocked25   double precision NOT NULL,  -- share of port 25 prefixes blocked, for ranking
    PRIMARY KEY (window_days, asn, family, day)
);
CREATE INDEX ON agg_class (window_days, day, class);

-- Changes of class between consecutive classified days of the timeline.
CREATE TABLE policy_changes (
    asn        bigint NOT NULL,
    family     smallint NOT NULL,
    day        date NOT NULL,
    from_class smallint NOT NULL,
    to_class   smallint NOT NULL,
    PRIMARY KEY (asn, family, day)
);
CREATE INDEX ON policy_changes (day);

-- One row: the day the rolling windows end on and when they were computed.
CREATE TABLE agg_state (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    as_of        date,
    refreshed_at timestamptz
);
INSERT INTO agg_state DEFAULT VALUES;
