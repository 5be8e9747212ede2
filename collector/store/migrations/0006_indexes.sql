-- 0006: the indexes of results, each for a query that needs it.
--
-- Every index on results costs each ingested row an index insert, and the
-- nonce index a random one (nonces are random). What each is for:
--
--   PRIMARY KEY (result_id, measured_at)   ingest's deduplication (INSERT
--       ... ON CONFLICT DO NOTHING); measured_at is in it because results
--       are partitioned by it.
--   (asn, family, port, measured_at)       the export of one ASN
--       (GET /api/v1/export?asn=), within each day's partition.
--   (submission_id) WHERE submission_id IS NOT NULL   a one-off
--       contribution's page; enrolled agents' rows add no entry (0005).
--   (nonce) WHERE verdict = 1              a one-off submission's replay
--       check (store.InsertSubmission): only an OPEN result's nonce is
--       vouched for by a signed statement, so only those are worth
--       replaying; the others could be made up anyway. It was on every row.
--
-- The rollups never read results but for a rebuild, which scans them all.
DROP INDEX results_nonce_idx;
CREATE INDEX results_open_nonce_idx ON results (nonce) WHERE verdict = 1;
