-- 0008: change feeds and webhooks (issue 13).
--
-- policy_changes is rewritten by every refresh for the (asn, family) pairs
-- it recomputes, so it cannot tell what is new. The refresher
-- (collector/dataset, changes()) compares what it deletes with what it
-- inserts, in the same transaction, and appends the difference here: a
-- change that was not there before, and a change that is gone
-- (retracted). The log is append-only; ids grow in commit order because
-- only the holder of the refresh lock appends, which lets readers (the
-- Atom feed, the webhook deliverer) follow it by id.
CREATE TABLE policy_change_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asn        bigint NOT NULL,
    family     smallint NOT NULL,
    day        date NOT NULL,
    from_class smallint NOT NULL,           -- op25b.v1.PolicyClass
    to_class   smallint NOT NULL,
    retracted  boolean NOT NULL DEFAULT false,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX ON policy_change_events (asn, id);

-- Endpoints an operator registered (op25b-collector webhook add) to be
-- POSTed each new event that matches their filters (0 and '' are any).
-- The secret signs the deliveries, so it is kept as given, not hashed.
-- last_event_id is the delivery cursor: every event up to it was
-- delivered or did not match. attempt counts the tries of the event after
-- it, failures the consecutive failed tries of any event; at the
-- deliverer's limit the webhook is disabled.
CREATE TABLE webhooks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL,
    secret          text NOT NULL,
    asn             bigint NOT NULL DEFAULT 0,
    country         text NOT NULL DEFAULT '',
    family          smallint NOT NULL DEFAULT 0,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_event_id   bigint NOT NULL,
    attempt         integer NOT NULL DEFAULT 0,
    failures        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,           -- NULL: at once
    disabled_at     timestamptz,
    disabled_reason text NOT NULL DEFAULT ''
);

-- Every delivery attempt: the HTTP status (NULL when none came back) or
-- the error, and how long it took.
CREATE TABLE webhook_deliveries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id  bigint NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    event_id    bigint NOT NULL,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL,
    status      integer,
    error       text NOT NULL DEFAULT '',
    duration_ms double precision NOT NULL
);
CREATE INDEX ON webhook_deliveries (webhook_id, id);
