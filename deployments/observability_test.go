package deployments_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// observabilityDir holds the Grafana dashboard, the Prometheus scrape configuration and its
// rules.
const observabilityDir = "observability"

// documentedMetrics returns the metrics docs/observability.md lists, full name → type
// (counter, gauge or histogram): the rows of the metric tables under each "All names start
// with `prefix`" line.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	prefixLine := regexp.MustCompile("^All names start with `(gatehouse_[a-z]+_)`")
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\| (counter|gauge|histogram) \\|")
	out := map[string]string{}
	prefix := ""
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			prefix = ""
		case prefixLine.MatchString(line):
			prefix = prefixLine.FindStringSubmatch(line)[1]
		case prefix != "" && row.MatchString(line):
			m := row.FindStringSubmatch(line)
			out[prefix+m[1]] = m[2]
		}
	}
	if len(out) == 0 {
		t.Fatal("docs/observability.md lists no metrics")
	}
	return out
}

// sourceMetrics returns the metric names the services register: the Name: fields and
// prometheus.NewDesc names of services/*/internal/metrics, under each file's namespace.
func sourceMetrics(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "services", "*", "internal", "metrics", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	namespace := regexp.MustCompile(`const namespace = "([a-z_]+)"`)
	names := regexp.MustCompile(`\bName:\s*"([a-z_]+)"|NewDesc\(namespace\s*\+\s*"_([a-z_]+)"`)
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := names.FindAllStringSubmatch(string(src), -1)
		if len(found) == 0 {
			continue
		}
		ns := namespace.FindStringSubmatch(string(src))
		if ns == nil {
			t.Fatalf("%s names metrics but declares no namespace constant", f)
		}
		for _, m := range found {
			out = append(out, ns[1]+"_"+m[1]+m[2])
		}
	}
	if len(out) == 0 {
		t.Fatal("no metric names found in services/*/internal/metrics")
	}
	return out
}

// TestMetricDocsMatchSources keeps docs/observability.md, the reference the dashboards are
// checked against, equal to the metrics the services register.
func TestMetricDocsMatchSources(t *testing.T) {
	t.Parallel()
	var documented []string
	for name := range documentedMetrics(t) {
		documented = append(documented, name)
	}
	if diff := diffSorted(documented, sourceMetrics(t)); diff != "" {
		t.Errorf("metrics in docs/observability.md (-) and in services/*/internal/metrics (+):\n%s", diff)
	}
}

// grafanaVariables stands in for Grafana's built-in interval variables so that a panel's
// query parses as the PromQL Grafana sends.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "6h", "${__range}", "6h")

// promqlMetrics parses expr and returns the metric names it selects, a histogram's _bucket,
// _sum and _count series named by the histogram.
func promqlMetrics(t *testing.T, where, expr string, known map[string]string) []string {
	t.Helper()
	node, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return nil
	}
	var out []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			t.Errorf("%s: %q selects series without a metric name", where, expr)
			return nil
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && known[base] == "histogram" {
				name = base
			}
		}
		out = append(out, name)
		return nil
	})
	return out
}

// dashboard is the part of Grafana's dashboard JSON model the test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Panels     []panel     `json:"panels"` // of a collapsed row
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestGrafanaDashboard checks the dashboard's queries: each parses as PromQL and names only
// metrics the services export, every metric is on some panel, and every query runs against
// the data source the dashboard's Prometheus variable selects.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	known := documentedMetrics(t)
	raw, err := os.ReadFile(filepath.Join(observabilityDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q: both are needed to import and link it", d.UID, d.Title)
	}

	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no Prometheus data source variable (type datasource, query prometheus)")
	}
	checkDS := func(where string, ds *datasource) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != dsVar {
			t.Errorf("%s: data source %+v, want {prometheus %s}", where, ds, dsVar)
		}
	}

	used := map[string]bool{}
	use := func(where, expr string) {
		for _, name := range promqlMetrics(t, where, expr, known) {
			if _, ok := known[name]; !ok {
				t.Errorf("%s: %q names %s, which no service exports (docs/observability.md)", where, expr, name)
			}
			used[name] = true
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,\s*[a-zA-Z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
			continue
		}
		use("variable "+v.Name, m[1])
	}

	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prior, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prior, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			where := "panel " + p.Title
			checkDS(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
				}
				refs[tg.RefID] = true
				checkDS(where+" "+tg.RefID, tg.Datasource)
				use(where+" "+tg.RefID, tg.Expr)
			}
		}
	}
	walk(d.Panels)

	for name := range known {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// prometheusConfig is the part of prometheus.yml the test reads.
type prometheusConfig struct {
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path"`
		Scheme        string `json:"scheme"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// TestPrometheusConfig checks that prometheus.yml scrapes /metrics of management and of the
// gateways on their admin listener, at the ports the binaries listen on by
// default, and that its rules parse and name only exported metrics.
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(observabilityDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg prometheusConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}

	// The process each job scrapes, and the variable of its listener's default address.
	jobs := map[string]struct{ process, listenEnv string }{
		"gatehouse-management": {"management", "MANAGEMENT_ADMIN_LISTEN"},
		"gatehouse-gateway":    {"gateway", "GATEWAY_ADMIN_LISTEN"},
	}
	var seen []string
	for _, sc := range cfg.ScrapeConfigs {
		job, ok := jobs[sc.JobName]
		if !ok {
			t.Errorf("scrape job %q: not one of Gatehouse's", sc.JobName)
			continue
		}
		seen = append(seen, sc.JobName)
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		if sc.Scheme != "" && sc.Scheme != "http" {
			t.Errorf("job %s: scheme %q: /metrics is served over plain HTTP", sc.JobName, sc.Scheme)
		}
		want := listenPort(t, defaultListen(t, job.process, job.listenEnv))
		n := 0
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				n++
				if got := listenPort(t, target); got != want {
					t.Errorf("job %s: target %s, want port %d (%s's default)", sc.JobName, target, want, job.listenEnv)
				}
			}
		}
		if n == 0 {
			t.Errorf("job %s: no targets", sc.JobName)
		}
	}
	if diff := diffSorted([]string{"gatehouse-gateway", "gatehouse-management"}, seen); diff != "" {
		t.Errorf("scrape jobs (-want +got):\n%s", diff)
	}

	known := documentedMetrics(t)
	if len(cfg.RuleFiles) == 0 {
		t.Error("prometheus.yml loads no rule files")
	}
	for _, f := range cfg.RuleFiles {
		checkRules(t, filepath.Join(observabilityDir, f), known)
	}
}

// checkRules parses a Prometheus rule file and checks each rule's expression.
func checkRules(t *testing.T, path string, known map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("rule file: %v", err)
		return
	}
	var rf struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			n++
			where := path + " " + r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: a rule is either an alert or a record", where)
			}
			for _, name := range promqlMetrics(t, where, r.Expr, known) {
				if _, ok := known[name]; !ok {
					t.Errorf("%s: %q names %s, which no service exports (docs/observability.md)", where, r.Expr, name)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no rules", path)
	}
}

// defaultListen returns the default of the listen address cmd/<process> reads from name.
func defaultListen(t *testing.T, process, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "services", process, "cmd", process, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\be\.String\("` + name + `",\s*"([^"]+)"\)`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("cmd/%s/main.go reads no %s with a default", process, name)
	}
	return string(m[1])
}
