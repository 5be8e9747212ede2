package deploytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/stream"
)

// registered is a prometheus.Registerer that keeps the names of the
// metrics registered on it as the exposition format names their samples
// (a histogram's _bucket, _sum and _count), series or not.
type registered map[string]bool

var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (r registered) Register(c prometheus.Collector) error {
	suffixes := []string{""}
	var m dto.Metric
	switch c := c.(type) {
	case *prometheus.HistogramVec:
		suffixes = []string{"_bucket", "_sum", "_count"}
	case *prometheus.SummaryVec:
		suffixes = []string{"_sum", "_count"}
	case prometheus.Metric:
		if err := c.Write(&m); err != nil {
			return err
		}
		switch {
		case m.Histogram != nil:
			suffixes = []string{"_bucket", "_sum", "_count"}
		case m.Summary != nil:
			suffixes = []string{"_sum", "_count"}
		}
	}
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	var err error
	for d := range descs {
		name := descName.FindStringSubmatch(d.String())
		if name == nil {
			err = fmt.Errorf("no name in %s", d)
			continue
		}
		for _, s := range suffixes {
			r[name[1]+s] = true
		}
	}
	return err
}

func (r registered) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r registered) Unregister(prometheus.Collector) bool { return false }

// collectorMetrics returns the names of the metrics the collector's
// packages register (those main registers itself are out of reach).
func collectorMetrics() registered {
	r := registered{}
	api.NewMetrics(r)
	api.NewRefreshMetrics(r)
	stream.NewMetrics(r)
	return r
}

// grafanaDurations are the Grafana variables that stand for a duration
// in a PromQL query, replaced before it is parsed as Grafana replaces
// them before it sends the query.
var grafanaDurations = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)\}?`)

// promQueries returns the PromQL expressions of the Prometheus targets of
// a dashboard's JSON, wherever they are (panels, rows' panels,
// annotations), by JSON path.
func promQueries(dashboard []byte) (map[string]string, error) {
	var doc any
	if err := json.Unmarshal(dashboard, &doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(v any, at string, prometheus bool)
	walk = func(v any, at string, prometheus bool) {
		switch v := v.(type) {
		case map[string]any:
			if ds, ok := v["datasource"].(map[string]any); ok {
				prometheus = ds["type"] == "prometheus"
			}
			if expr, ok := v["expr"].(string); ok && prometheus {
				out[at] = expr
			}
			for k, c := range v {
				walk(c, at+"."+k, prometheus)
			}
		case []any:
			for i, c := range v {
				walk(c, fmt.Sprintf("%s[%d]", at, i), prometheus)
			}
		}
	}
	walk(doc, "", false)
	return out, nil
}

// queryMetrics parses a dashboard's PromQL expression with Prometheus's
// own parser and returns the metrics it selects.
func queryMetrics(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaDurations.ReplaceAllString(expr, "5m"))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			names = append(names, name)
		}
		return nil
	})
	if len(names) == 0 {
		return nil, errors.New("selects no metric")
	}
	return names, nil
}

// checkQueries checks every PromQL expression of a dashboard: it parses,
// and every metric it selects is one the collector registers. It returns
// the number of expressions and the problems.
func checkQueries(dashboard []byte, metrics registered) (int, []string, error) {
	queries, err := promQueries(dashboard)
	if err != nil {
		return 0, nil, err
	}
	var problems []string
	for _, at := range slices.Sorted(maps.Keys(queries)) {
		expr := queries[at]
		names, err := queryMetrics(expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", at, expr, err))
			continue
		}
		for _, name := range names {
			if !metrics[name] {
				problems = append(problems, fmt.Sprintf("%s: %s: the collector registers no %s", at, expr, name))
			}
		}
	}
	return len(queries), problems, nil
}

// TestDashboardQueries parses every PromQL expression of the provisioned
// dashboards with Prometheus's parser and checks that every metric they
// select is one the collector registers.
func TestDashboardQueries(t *testing.T) {
	metrics := collectorMetrics()
	for _, name := range []string{"op25b_results_stored_total", "op25b_ingest_lag_seconds_bucket", "op25b_refmta_flagged"} {
		if !metrics[name] {
			t.Errorf("the collector's metrics have no %s: is collectorMetrics broken? (%v)", name, slices.Sorted(maps.Keys(metrics)))
		}
	}
	total := 0
	err := filepath.WalkDir(filepath.Join(root, "dashboard", "provisioning"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n, problems, err := checkQueries(b, metrics)
		if err != nil {
			return fmt.Errorf("%s: %w", rel(p), err)
		}
		for _, pr := range problems {
			t.Errorf("%s: %s", rel(p), pr)
		}
		t.Logf("%s: %d PromQL expressions", rel(p), n)
		total += n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 {
		t.Error("no PromQL expression found in dashboard/provisioning")
	}
}

// TestDashboardQueriesCatch shows checkQueries a dashboard with broken
// expressions: each is reported.
func TestDashboardQueriesCatch(t *testing.T) {
	prom := `{"type": "prometheus", "uid": "op25b-prometheus"}`
	target := func(expr string) string {
		b, _ := json.Marshal(expr)
		return `{"datasource": ` + prom + `, "expr": ` + string(b) + `}`
	}
	dashboard := `{"panels": [
	{"datasource": ` + prom + `, "targets": [
		` + target(`sum by (verdict) (rate(op25b_results_stored_total{verdict="OPEN"}[$__rate_interval]))`) + `,
		` + target(`histogram_quantile(0.9, sum by (le) (rate(op25b_ingest_lag_seconds_bucket[5m])))`) + `,
		` + target(`sum(rate(op25b_results_stored_totl[5m]))`) + `,
		` + target(`sum(rate(op25b_results_stored_total[5m])`) + `,
		` + target(`rate(op25b_results_stored_total[5m]) / on(instance) group_left op25b_agents_connectd`) + `,
		` + target(`{__name__="op25b_no_such_metric"}`) + `,
		` + target(`time()`) + `,
		` + target(`op25b_ingest_lag_seconds_buckets`) + `
	]},
	{"type": "row", "panels": [{"datasource": ` + prom + `, "targets": [` + target(`up{job=`) + `]}]},
	{"datasource": {"type": "op25b-observatory-datasource", "uid": "op25b"}, "targets": [{"expr": "not PromQL", "queryType": "asns"}]}
]}`
	n, problems, err := checkQueries([]byte(dashboard), collectorMetrics())
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 {
		t.Errorf("found %d expressions; want the 9 of the Prometheus targets", n)
	}
	want := []string{
		"op25b_results_stored_totl",
		"1:41: parse error: unclosed left parenthesis",
		"the collector registers no op25b_agents_connectd",
		"the collector registers no op25b_no_such_metric",
		"selects no metric",
		"the collector registers no op25b_ingest_lag_seconds_buckets",
		"unexpected end of input",
	}
	if len(problems) != len(want) {
		t.Errorf("problems:\n%s\nwant %d", strings.Join(problems, "\n"), len(want))
	}
	for _, w := range want {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("no problem says %q:\n%s", w, strings.Join(problems, "\n"))
		}
	}
}
