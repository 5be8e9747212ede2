package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/op25b/observatory/collector/archive"
	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/internal/testenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// duckDBTool is the Node program that runs SQL in DuckDB (tools/duckdb).
var duckDBTool = filepath.Join("..", "..", "tools", "duckdb")

// TestArchiveDuckDB runs the DuckDB queries that docs/researcher.md shows
// for the daily archives, as they are written there, with DuckDB's Node
// package (a Parquet reader that is not the writer's), in a directory
// holding the archive as a researcher's download would, and checks their
// answer against the database.
func TestArchiveDuckDB(t *testing.T) {
	testenv.Integration(t, "Node and DuckDB")
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "node is not installed (make test needs it for the plugin too): "+err.Error())
		return
	}
	if _, err := os.Stat(filepath.Join(duckDBTool, "node_modules", "@duckdb", "node-api")); err != nil {
		testenv.Unavailable(t, "DuckDB's Node package is not installed (make test runs npm ci in tools/duckdb)")
		return
	}
	tool, err := filepath.Abs(filepath.Join(duckDBTool, "query.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	queries := docSQL(t, filepath.Join("..", "..", "docs", "researcher.md"), "## Daily archives")
	if len(queries) == 0 {
		t.Fatal("docs/researcher.md shows no SQL for the daily archives")
	}

	s, d := datasettest.Open(t, datasettest.NewWorld())
	// A few results charged to their reference MTA, for the documented
	// filter to leave out.
	if tag, err := s.Pool.Exec(context.Background(), `UPDATE results SET refmta_charged = true
		WHERE result_id IN (SELECT result_id FROM results WHERE family = 4 ORDER BY result_id LIMIT 5)`); err != nil || tag.RowsAffected() != 5 {
		t.Fatalf("charging 5 results: %v, %v", tag, err)
	}
	work := t.TempDir()
	run(t, newArchiver(s, d, filepath.Join(work, "archive")), archive.Options{})
	want := map[string]int64{}
	rows, err := s.Pool.Query(context.Background(), `SELECT coalesce(asn, 0), port, verdict, count(*) FROM results
		WHERE family = 4 AND NOT refmta_charged AND measured_at < $1 GROUP BY 1, 2, 3`, datasettest.Now.Truncate(dataset.Day))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var asn, port, verdict, n int64
		if err := rows.Scan(&asn, &port, &verdict, &n); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("AS%d port %d %s", asn, port, dataset.VerdictName(op25bv1.Verdict(verdict)))] = n
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(want) < 2 {
		t.Fatalf("the world has %d groups of IPv4 results; the check needs several", len(want))
	}

	for _, q := range queries {
		cmd := exec.Command(node, tool)
		cmd.Stdin = strings.NewReader(q)
		cmd.Dir = work
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("DuckDB refuses the documented query\n%s\n%v: %s", q, err, stderr.String())
		}
		var got []map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("query.mjs printed %q: %v", out, err)
		}
		seen := map[string]int64{}
		for _, r := range got {
			n, err := strconv.ParseInt(fmt.Sprint(r["results"]), 10, 64)
			if err != nil {
				t.Fatalf("row %v: results is not a count", r)
			}
			seen[fmt.Sprintf("AS%v port %v %v", r["asn"], r["port"], r["verdict"])] = n
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("DuckDB answers the documented query\n%s\nwith %v; the database has %v", q, seen, want)
		}
	}
}

// docSQL returns the sql code blocks of the section of the Markdown file
// path that starts with the heading line section.
func docSQL(t *testing.T, path, section string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(b), "\n"+section+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", path, section)
	}
	if end := strings.Index(text, "\n## "); end >= 0 {
		text = text[:end]
	}
	var out []string
	for {
		_, rest, ok := strings.Cut(text, "```sql\n")
		if !ok {
			return out
		}
		block, after, _ := strings.Cut(rest, "```")
		out = append(out, block)
		text = after
	}
}
