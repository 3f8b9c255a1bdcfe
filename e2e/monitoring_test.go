package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/deploy/monitoring"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// eventOnlyMetrics are metrics the dashboard or the rules name that a healthy sandbox
// does not show: vectors whose series (and so whose HELP and TYPE lines) appear only
// with their first event. Each says why; keep the list short.
var eventOnlyMetrics = map[string]string{
	"meshfed_agent_publish_errors_total":        "a publish failed",
	"meshfed_agent_view_resyncs_total":          "an agent's view check found a difference",
	"meshfed_hub_etcd_nospace_recoveries_total": "the hub's etcd raised NOSPACE",
	"meshfed_hub_rejected_records":              "the hub refused a cluster's record",
	"meshfed_xds_nacks_total":                   "a proxy NACKed",
	"meshfed_xds_propagation_discarded_total":   "a propagation figure was negative or over an hour",
}

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
		targets = append(targets, c.MetricsAddr)
		if c.GatewayHealthAddr != "" {
			targets = append(targets, c.GatewayHealthAddr)
		}
	}
	// The hub reports a cluster's view only after the agent's first view check
	// (--view-check-interval after it starts): wait for that, not for events.
	testutil.Eventually(t, time.Minute, "every metric the dashboard and rules name exported", func() error {
		exported := map[string]string{} // name → type ("" for a sample name)
		for _, addr := range targets {
			if err := scrapeNames(ctx, addr, exported); err != nil {
				return err
			}
		}
		var missing []string
		for name, where := range usedBy {
			if _, ok := eventOnlyMetrics[name]; ok || isExported(name, exported) {
				continue
			}
			slices.Sort(where)
			missing = append(missing, fmt.Sprintf("%s, used by %s", name, strings.Join(slices.Compact(where), "; ")))
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			return fmt.Errorf("deploy/monitoring names metrics the sandbox's hub, agents and gateways do not export "+
				"(fix the query, or list an event-only metric in eventOnlyMetrics):\n%s", strings.Join(missing, "\n"))
		}
		return nil
	})
	// An event-only metric is not seen exported, so at least its name must be one the
	// code defines: the part after its subsystem, as a string literal of a Go file.
	for name := range eventOnlyMetrics {
		if len(usedBy[name]) == 0 {
			t.Errorf("eventOnlyMetrics lists %s, which the dashboard and rules no longer name: remove it", name)
		}
		if !definedInSource(t, name) {
			t.Errorf("%s (eventOnlyMetrics) is defined by no Go file of the repository", name)
		}
	}
	t.Logf("%d metrics named by the dashboard and rules, scraped from %d targets", len(usedBy), len(targets))
}

// definedInSource reports whether a non-test Go file of the repository holds the
// tail of name after "meshfed_<subsystem>_" as a string literal, for some split.
func definedInSource(t *testing.T, name string) bool {
	t.Helper()
	rest := strings.TrimPrefix(name, "meshfed_")
	var tails []string
	for i, r := range rest {
		if r == '_' {
			tails = append(tails, `"`+rest[i+1:]+`"`)
		}
	}
	found := false
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "e2e" || d.Name() == "deploy") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, tail := range tails {
			if strings.Contains(string(src), tail) {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
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
