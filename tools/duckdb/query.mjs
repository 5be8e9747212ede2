// Runs the SQL read from standard input in DuckDB, in the current
// directory (so relative paths such as 'archive/*/*.parquet' are read as a
// researcher's shell would), and prints the rows of the last statement as
// a JSON array of objects. Used by collector/archive's TestArchiveDuckDB to
// run the queries docs/researcher.md shows; `make test` installs
// @duckdb/node-api here with npm ci.
import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';

const sql = readFileSync(0, 'utf8');
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
try {
  const reader = await conn.runAndReadAll(sql);
  process.stdout.write(JSON.stringify(reader.getRowObjectsJson()) + '\n');
} catch (err) {
  process.stderr.write(`duckdb: ${err.message}\n`);
  process.exitCode = 1;
}
