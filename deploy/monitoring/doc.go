// Package monitoring holds meshfed's Grafana dashboard (grafana/meshfed-overview.json)
// and Prometheus alerting rules (prometheus/meshfed-rules.yaml), embedded so that
// tests check exactly the files an operator imports: every PromQL expression parses
// with Prometheus's own parser (promtool), the rules pass their unit tests
// (prometheus/meshfed-rules_test.yaml), and every metric they name is one a running
// sandbox exports (e2e). docs/operations.md, "Dashboards and alerts", tells how to
// use them.
package monitoring
