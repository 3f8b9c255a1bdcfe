package monitoring

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Dashboard is grafana/meshfed-overview.json.
//
//go:embed grafana/meshfed-overview.json
var Dashboard []byte

// Rules is prometheus/meshfed-rules.yaml.
//
//go:embed prometheus/meshfed-rules.yaml
var Rules []byte

// Query is one PromQL expression of the dashboard or the rules.
type Query struct {
	// Where names it: "dashboard panel <id> (<title>) target <refId>" or
	// "rule <alert> (<severity>)".
	Where string
	Expr  string
}

// Grafana's interval variables, replaced as Grafana would before the expression
// reaches Prometheus. The dashboard uses no other variable in an expression.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

type panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// DashboardQueries returns the dashboard's expressions, Grafana's variables
// replaced, in panel order.
func DashboardQueries() ([]Query, error) {
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		return nil, fmt.Errorf("grafana/meshfed-overview.json: %w", err)
	}
	var out []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Where: fmt.Sprintf("dashboard panel %d (%s) target %s", p.ID, p.Title, t.RefID),
					Expr: grafanaVariables.Replace(t.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

// RuleGroups is the rules file's form.
type RuleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []Rule `json:"rules"`
	} `json:"groups"`
}

// Rule is an alerting rule.
type Rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// ParseRules reads Rules.
func ParseRules() (RuleGroups, error) {
	var g RuleGroups
	if err := yaml.UnmarshalStrict(Rules, &g); err != nil {
		return g, fmt.Errorf("prometheus/meshfed-rules.yaml: %w", err)
	}
	return g, nil
}

// RuleQueries returns the alerting rules' expressions.
func RuleQueries() ([]Query, error) {
	g, err := ParseRules()
	if err != nil {
		return nil, err
	}
	var out []Query
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			out = append(out, Query{Where: fmt.Sprintf("rule %s (%s)", r.Alert, r.Labels["severity"]), Expr: r.Expr})
		}
	}
	return out, nil
}

var (
	stringLiteral = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	comment       = regexp.MustCompile(`#[^\n]*`)
	meshfedName   = regexp.MustCompile(`\bmeshfed_[a-zA-Z0-9_:]*`)
	selectorName  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
)

// MetricNames returns the metrics expr selects, sorted: its identifiers that begin
// with meshfed_ outside strings and comments (no label of meshfed's does). The
// dashboard and rules select meshfed's metrics only; a selector of any other metric
// with label matchers is an error, so that one cannot slip past the export check.
func MetricNames(expr string) ([]string, error) {
	bare := comment.ReplaceAllString(stringLiteral.ReplaceAllString(expr, `""`), "")
	for _, m := range selectorName.FindAllStringSubmatch(bare, -1) {
		if !strings.HasPrefix(m[1], "meshfed_") {
			return nil, fmt.Errorf("%q selects %s: the dashboard and rules use meshfed's metrics only", expr, m[1])
		}
	}
	names := meshfedName.FindAllString(bare, -1)
	if len(names) == 0 {
		return nil, fmt.Errorf("%q selects no meshfed_ metric", expr)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
