-- 0003: faults near a reference MTA are not charged to networks.
--
-- When the reference MTAs of one round sit in different networks and their
-- verdicts for the same agent, port and family differ, the results that
-- depart from the majority of networks (without a majority: all but a
-- signed OPEN, or all) are charged to the reference MTA's side:
-- refmta_charged. They stay
-- stored, are exported with the marker, count in the reference MTA's own
-- figures and are left out of the network's tallies (n_charged counts them
-- so that totals reconcile). docs/dataset.md has the rule.

-- The reference MTA's network for this probe: the ASN of the address the
-- agent dialled (in the snapshot in force at measurement time) and its /24
-- or /48, compared when the ASN is unknown. Public addresses of our own
-- servers, not volunteers'.
ALTER TABLE results ADD COLUMN refmta_asn bigint;
ALTER TABLE results ADD COLUMN refmta_prefix cidr;
-- Derived from the rows of the same round stored together (one upload
-- batch, one transaction: the same received_at); ingest sets it, rebuild
-- recomputes it. The only column of results that is ever updated.
ALTER TABLE results ADD COLUMN refmta_charged boolean NOT NULL DEFAULT false;

ALTER TABLE agg_agent_day ADD COLUMN n_charged integer NOT NULL DEFAULT 0;
ALTER TABLE agg_port ADD COLUMN charged bigint NOT NULL DEFAULT 0;

-- Tallies per reference MTA, family, port and UTC day, per verdict group;
-- charged results count here (n_charged says how many of them were).
-- Filled by ingest from this version on and by `op25b-collector rebuild`
-- for earlier results.
CREATE TABLE agg_refmta_day (
    refmta_id      text NOT NULL,
    family         smallint NOT NULL,
    port           integer NOT NULL,
    day            date NOT NULL,
    n_open         integer NOT NULL DEFAULT 0,
    n_blocked      integer NOT NULL DEFAULT 0,
    n_intercepted  integer NOT NULL DEFAULT 0,
    n_inconclusive integer NOT NULL DEFAULT 0,
    n_charged      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (refmta_id, family, port, day)
);
CREATE INDEX ON agg_refmta_day (day);
