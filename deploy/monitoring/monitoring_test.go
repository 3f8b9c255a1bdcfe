package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	promtoolOnce sync.Once
	promtoolPath string
	promtoolErr  error
)

// promtool returns the real promtool, installing it (hack/tools/promtool.sh) if the
// machine has none. The test fails when it cannot: the checks below need it.
func promtool(t *testing.T) string {
	t.Helper()
	promtoolOnce.Do(func() {
		var stderr bytes.Buffer
		cmd := exec.Command("bash", "../../hack/tools/promtool.sh")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		promtoolPath = strings.TrimSpace(string(out))
		if err != nil {
			promtoolErr = fmt.Errorf("hack/tools/promtool.sh: %v\n%s", err, stderr.String())
		}
	})
	if promtoolErr != nil {
		t.Fatal(promtoolErr)
	}
	return promtoolPath
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRulesPass runs promtool's own checks of the rules file (every expression and
// template parses) and the rules' unit tests.
func TestRulesPass(t *testing.T) {
	runPromtool(t, "check", "rules", "prometheus/meshfed-rules.yaml")
	runPromtool(t, "test", "rules", "prometheus/meshfed-rules_test.yaml")
}

// TestDashboardQueriesParse hands every dashboard expression to Prometheus's parser:
// promtool checks them as recording rules of a throwaway file.
func TestDashboardQueriesParse(t *testing.T) {
	queries, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 30 {
		t.Fatalf("the dashboard has %d queries; expected the overview's 30 or more", len(queries))
	}
	type record struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var records []record
	for i, q := range queries {
		if strings.Contains(q.Expr, "$") {
			t.Errorf("%s: %q uses a Grafana variable the test does not know", q.Where, q.Expr)
		}
		records = append(records, record{Record: fmt.Sprintf("dashboard_query_%d", i), Expr: q.Expr})
	}
	file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	if err != nil {
		// promtool names the record (dashboard_query_<i>) whose expression failed.
		for i, q := range queries {
			if strings.Contains(string(out), fmt.Sprintf("dashboard_query_%d\"", i)) || strings.Contains(string(out), fmt.Sprintf("dashboard_query_%d:", i)) {
				t.Errorf("%s: %q", q.Where, q.Expr)
			}
		}
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}

// TestEveryQueryNamesMeshfedMetrics: each expression selects at least one of meshfed's
// metrics and no other (e2e checks that a sandbox exports them).
func TestEveryQueryNamesMeshfedMetrics(t *testing.T) {
	d, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	r, err := RuleQueries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(d, r...) {
		if _, err := MetricNames(q.Expr); err != nil {
			t.Errorf("%s: %v", q.Where, err)
		}
	}
	if _, err := MetricNames(`sum(up{job="x"}) + meshfed_a`); err == nil {
		t.Error("MetricNames accepted a selector of up")
	}
	names, err := MetricNames(`rate(meshfed_a_total{reason!~"meshfed_not_a_metric"}[5m]) / on (cluster) meshfed_b`)
	if err != nil || strings.Join(names, ",") != "meshfed_a_total,meshfed_b" {
		t.Errorf("MetricNames = %v, %v; want [meshfed_a_total meshfed_b]", names, err)
	}
}

// TestAlertsAreActionable: every alert has a known severity, a summary, a description
// and a runbook_url that lands on a heading of docs/operations.md, and is exercised by
// the unit tests.
func TestAlertsAreActionable(t *testing.T) {
	g, err := ParseRules()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(doc), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	tests, err := os.ReadFile("prometheus/meshfed-rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const docURL = "https://github.com/meshfed/meshfed/blob/main/docs/operations.md#"
	n := 0
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			n++
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert (recording rules do not belong in this file)", grp.Name)
				continue
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q; use warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], docURL)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is not a heading of docs/operations.md (%s<anchor>)", r.Alert, r.Annotations["runbook_url"], docURL)
			}
			if !bytes.Contains(tests, []byte("alertname: "+r.Alert+"\n")) {
				t.Errorf("%s: no case in prometheus/meshfed-rules_test.yaml", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDashboardIsImportable: the things Grafana needs to import the file anywhere.
func TestDashboardIsImportable(t *testing.T) {
	var d struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []map[string]any `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Type != "datasource" {
		t.Error("the first variable must be the Prometheus data source, ${datasource}")
	}
	ids := map[float64]bool{}
	for _, p := range d.Panels {
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v twice", id)
		}
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		ds, _ := p["datasource"].(map[string]any)
		if ds["uid"] != "${datasource}" {
			t.Errorf("panel %v (%v): data source %v; use ${datasource} so the dashboard imports into any Grafana", id, p["title"], ds)
		}
	}
}
