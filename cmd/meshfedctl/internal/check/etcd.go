package check

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
)

// Thresholds of the etcd database against its quota: warn, then fail. At the quota
// etcd raises NOSPACE and refuses every write.
const (
	dbWarnRatio = 0.8
	dbFailRatio = 0.95
)

// recentEvents is how far back Warning Events of the hub's etcd upkeep count.
const recentEvents = time.Hour

const fixHubMetrics = "give --hub-metrics http://HOST:PORT of the hub's --metrics-addr " +
	"(e.g. kubectl -n meshfed-system port-forward deploy/meshfed-hub 9090 and --hub-metrics http://127.0.0.1:9090)"

// checkEtcd judges the hub's etcd from the leading hub's metrics (members, each
// one's database size against its quota, alarms) and from the Warning Events the hub
// records on its ConfigMap.
func checkEtcd(ctx context.Context, r *Report, h *hub, opts Options) {
	checkEtcdMetrics(ctx, r, opts)
	list, err := h.kube.CoreV1().Events(hubinfo.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + hubinfo.ConfigMapName + ",type=Warning"})
	if err != nil {
		r.warn(GroupEtcd, "recent warnings", "cannot list the hub's Events: "+err.Error(),
			"grant the operator list on events in "+hubinfo.Namespace)
		return
	}
	var recent []string
	for _, e := range list.Items {
		at := e.LastTimestamp.Time
		if at.IsZero() {
			at = e.EventTime.Time
		}
		if opts.Now.Sub(at) <= recentEvents && strings.HasPrefix(e.Reason, "Etcd") {
			recent = append(recent, fmt.Sprintf("%s %s ago: %s", e.Reason, opts.Now.Sub(at).Round(time.Second), e.Message))
		}
	}
	if len(recent) > 0 {
		r.warn(GroupEtcd, "recent warnings", strings.Join(recent, "; "),
			"see \"The hub's etcd\" in docs/operations.md for each reason; kubectl -n "+hubinfo.Namespace+
				" get events --field-selector regarding.name="+hubinfo.ConfigMapName)
		return
	}
	r.ok(GroupEtcd, "recent warnings", "none in the last hour")
}

func checkEtcdMetrics(ctx context.Context, r *Report, opts Options) {
	if len(opts.HubMetrics) == 0 {
		r.warn(GroupEtcd, "members", "not checked: the hub's metrics address was not given", fixHubMetrics)
		return
	}
	var leader families
	var errs []string
	for _, url := range opts.HubMetrics {
		f, err := scrape(ctx, opts.HTTP, url)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if _, ok := f["meshfed_hub_etcd_db_size_bytes"]; ok {
			leader = f
			break
		}
	}
	switch {
	case leader == nil && len(errs) == len(opts.HubMetrics):
		r.fail(GroupEtcd, "members", "the hub's metrics do not answer: "+strings.Join(errs, "; "),
			"check that meshfed hub runs (its pod, its logs) and that --hub-metrics is its --metrics-addr")
		return
	case leader == nil:
		r.warn(GroupEtcd, "members", "no hub replica reports its etcd yet (the leading replica does, after its first check)",
			"wait for --etcd-check-interval (30s) and run again; if it persists, see the hub's etcd-maintenance logs")
		return
	}
	size := leader.samples("meshfed_hub_etcd_db_size_bytes")
	quota := map[string]float64{}
	for _, s := range leader.samples("meshfed_hub_etcd_quota_bytes") {
		quota[s.labels["endpoint"]] = s.value
	}
	if errs, _ := leader.sum("meshfed_hub_etcd_check_errors_total"); errs > 0 && len(size) == 0 {
		r.fail(GroupEtcd, "members", "the hub cannot read its etcd's status", "see the hub's etcd-maintenance logs")
		return
	}
	var endpoints []string
	for _, s := range size {
		endpoints = append(endpoints, s.labels["endpoint"])
	}
	slices.Sort(endpoints)
	r.ok(GroupEtcd, "members", fmt.Sprintf("%d reporting: %s", len(size), strings.Join(endpoints, ", ")))
	for _, s := range size {
		ep := s.labels["endpoint"]
		q := quota[ep]
		name := "db size " + ep
		if q <= 0 {
			r.warn(GroupEtcd, name, fmt.Sprintf("%s, quota unknown", mib(s.value)), "see the hub's etcd-maintenance logs")
			continue
		}
		detail := fmt.Sprintf("%s of %s quota (%.0f%%)", mib(s.value), mib(q), 100*s.value/q)
		switch ratio := s.value / q; {
		case ratio >= dbFailRatio:
			r.fail(GroupEtcd, name, detail, "the hub defragments by itself; if live data fills it, raise --etcd-quota-bytes (at most 8 GiB) or delete data")
		case ratio >= dbWarnRatio:
			r.warn(GroupEtcd, name, detail, "near the quota: raise --etcd-quota-bytes or delete data before etcd raises NOSPACE")
		default:
			r.ok(GroupEtcd, name, detail)
		}
	}
	var alarms []string
	for _, s := range leader.samples("meshfed_hub_etcd_alarms_active") {
		if s.value > 0 {
			alarms = append(alarms, fmt.Sprintf("%s on %.0f member(s)", s.labels["alarm"], s.value))
		}
	}
	switch {
	case len(alarms) > 0:
		r.fail(GroupEtcd, "alarms", strings.Join(alarms, ", "),
			"NOSPACE: the leading hub recovers within --etcd-check-interval, else raise --etcd-quota-bytes; CORRUPT: restore the member from a healthy one")
	default:
		r.ok(GroupEtcd, "alarms", "none")
	}
}

func mib(b float64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}
