-- 0005: one-off contributions (`op25b-agent check --submit`).
--
-- A volunteer who does not enroll can upload one round over HTTP. Its
-- results are stored like any agent's, with an empty agent_id and the
-- submission they came with. The shares count them at most once per prefix:
-- in the tallies, all one-off results of one /24 or /48 are one agent
-- ('one-off ' and the prefix), so that repeated runs from one network weigh
-- what one agent there weighs (docs/dataset.md, "One-off contributions").

CREATE TABLE submissions (
    submission_id  uuid PRIMARY KEY,               -- UUIDv7 chosen by the collector
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    -- The agent's round id: a round is taken once, so a replay is refused.
    round_id       text NOT NULL UNIQUE,
    -- Restricted: the submitter's address, as the collector saw it.
    client         inet NOT NULL,
    agent_version  text NOT NULL DEFAULT '',
    -- The span of the results' measured_at, which bounds the partitions a
    -- lookup of the submission's results reads.
    measured_from  timestamptz NOT NULL,
    measured_to    timestamptz NOT NULL,
    results        integer NOT NULL
);

ALTER TABLE results ADD COLUMN submission_id uuid;

-- The share page reads a submission's results. Partial: the rows of
-- enrolled agents (all but a few) add no entry, so ingest pays nothing.
CREATE INDEX ON results (submission_id) WHERE submission_id IS NOT NULL;
