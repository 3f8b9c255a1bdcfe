package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/deploy/monitoring"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

// eventOnlyMetrics are metrics the dashboard or the rules name that a healthy sandbox
// does not show: vectors whose series (and so whose HELP and TYPE lines) appear only
// with their first event. Each says why; keep the list short.
var eventOnlyMetrics = map[string]string{}

// checkMonitoringMetrics scrapes the sandbox's hub replicas, agents and gateways and
// fails for every metric that deploy/monitoring's dashboard or rules name and none of
// them exports (by a sample, or by the HELP/TYPE lines of a metric with no sample yet):
// a renamed metric or a typo in a query is found here, not on an empty panel.
func checkMonitoringMetrics(ctx context.Context, t *testing.T, s *sandbox.Sandbox) {
	t.Helper()
	dash, err := monitoring.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.RuleQueries()
	if err != nil {
		t.Fatal(err)
	}
	usedBy := map[string][]string{}
	for _, q := range append(dash, rules...) {
		names, err := monitoring.MetricNames(q.Expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			usedBy[n] = append(usedBy[n], q.Where)
		}
	}
	var targets []string
	for _, r := range s.Hub.Replicas {
		targets = append(targets, r.MetricsAddr)
	}
	for _, c := range s.Clusters {
		targets = append(targets, c.AgentAddr)
		if c.GatewayHealthAddr != "" {
			targets = append(targets, c.GatewayHealthAddr)
		}
	}
	exported := map[string]string{} // name → type ("" for a sample name)
	for _, addr := range targets {
		if err := scrapeNames(ctx, addr, exported); err != nil {
			t.Fatal(err)
		}
	}
	var missing []string
	for name, where := range usedBy {
		if isExported(name, exported) {
			continue
		}
		if why, ok := eventOnlyMetrics[name]; ok {
			t.Logf("%s not exported yet (%s)", name, why)
			continue
		}
		slices.Sort(where)
		missing = append(missing, fmt.Sprintf("%s, used by %s", name, strings.Join(slices.Compact(where), "; ")))
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("deploy/monitoring names metrics the sandbox's hub, agents and gateways do not export "+
			"(fix the query, or list an event-only metric in eventOnlyMetrics):\n%s", strings.Join(missing, "\n"))
	}
	t.Logf("%d metrics named by the dashboard and rules, scraped from %d targets", len(usedBy), len(targets))
}

func isExported(name string, exported map[string]string) bool {
	if _, ok := exported[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] == "histogram" {
			return true
		}
	}
	return false
}

// scrapeNames adds the metric names of addr's /metrics to names: sample names with
// "", and each # TYPE line's name with its type.
func scrapeNames(ctx context.Context, addr string, names map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				names[f[0]] = f[1]
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if _, seen := names[f[0]]; !seen {
					names[f[0]] = ""
				}
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			if _, seen := names[line[:i]]; !seen {
				names[line[:i]] = ""
			}
		}
	}
	return sc.Err()
}
