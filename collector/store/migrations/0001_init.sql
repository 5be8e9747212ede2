-- 0001: principals and enrollment, ASN snapshots, raw results and sightings.
--
-- Raw results are immutable: rows are inserted once (deduplicated by the
-- agent-generated UUIDv7 result_id) and never updated. measured_at is the
-- time embedded in result_id, so (result_id, measured_at) is unique exactly
-- when result_id is, and the table can be partitioned by time.

CREATE TABLE enrollment_tokens (
    token_id     text PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,        -- SHA-256 of the secret; the secret is never stored
    label        text NOT NULL,
    kind         smallint NOT NULL,            -- op25b.v1.PrincipalKind
    max_uses     integer NOT NULL DEFAULT 1,
    uses         integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);

CREATE TABLE principals (
    principal_id    text PRIMARY KEY,
    kind            smallint NOT NULL,         -- op25b.v1.PrincipalKind
    public_key      bytea NOT NULL,
    credential_hash bytea NOT NULL UNIQUE,     -- SHA-256 of the bearer credential
    label           text NOT NULL,
    token_id        text REFERENCES enrollment_tokens (token_id),
    software        text NOT NULL DEFAULT '',
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_seen_at    timestamptz,
    spool_dropped   bigint NOT NULL DEFAULT 0  -- results the agent's full spool dropped, as last reported
);

CREATE TABLE asn_snapshots (
    snapshot_id  bigserial PRIMARY KEY,
    sha256       text NOT NULL UNIQUE,
    format       text NOT NULL,
    source       text NOT NULL,
    prefixes     integer NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE as_names (
    asn          bigint PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    country      text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE results (
    result_id        uuid NOT NULL,
    measured_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    agent_id         text NOT NULL,
    refmta_id        text NOT NULL,
    port             integer NOT NULL,
    family           smallint NOT NULL,       -- 4 or 6
    verdict          smallint NOT NULL,       -- op25b.v1.Verdict
    failure          text NOT NULL DEFAULT '',
    detail           text NOT NULL DEFAULT '',
    nonce            bytea,
    round_id         text NOT NULL DEFAULT '',
    schedule_version text NOT NULL DEFAULT '',
    agent_version    text NOT NULL DEFAULT '',
    -- Restricted: the volunteer's full egress address as the servers
    -- observed it. Public data carries prefix and asn only.
    egress           inet,
    egress_source    smallint NOT NULL DEFAULT 0, -- 1 statement, 2 control, 3 ingest connection
    prefix           cidr,                        -- /24 or /48 of egress
    asn              bigint,
    asn_snapshot_id  bigint,
    evidence         bytea,                       -- op25b.v1.ProbeResult as received, protobuf
    PRIMARY KEY (result_id, measured_at)
) PARTITION BY RANGE (measured_at);

CREATE INDEX ON results (asn, family, port, measured_at);
CREATE INDEX ON results (nonce);

CREATE TABLE sightings (
    sighting_id      uuid NOT NULL,
    seen_at          timestamptz NOT NULL,
    refmta_id        text NOT NULL,
    nonce            bytea NOT NULL,
    observed_source  inet NOT NULL,               -- restricted, as egress above
    port             integer NOT NULL,
    tls              boolean NOT NULL,
    PRIMARY KEY (sighting_id, seen_at)
) PARTITION BY RANGE (seen_at);

CREATE INDEX ON sightings (nonce);
