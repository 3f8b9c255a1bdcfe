package check

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
)

// checkXDS asks each agent whose address is given what it serves: the view its xDS
// server serves from (/debug/view: live, restored or none; whether it reaches the
// hub) and its xDS server's metrics (proxy groups connected, responses proxies
// rejected, remote gateways failing their probe). An agent's /debug and /metrics
// listen on loopback in its pod unless opened, so without an address the cluster is
// a warning saying how to reach it.
func checkXDS(ctx context.Context, r *Report, clusters []v1.MeshCluster, opts Options) {
	for _, mc := range clusters {
		name := mc.Name
		add := func(what string, s Status, detail, fix string) {
			r.add(Result{Group: GroupXDS, Cluster: name, Name: name + " " + what, Status: s, Detail: detail, Fix: fix})
		}
		url, ok := opts.Agents[name]
		if !ok {
			add("xDS", Warn, "not checked: the agent's address was not given (its /debug and /metrics listen on loopback in its pod)",
				"kubectl -n meshfed-system port-forward deploy/meshfed-agent 9094 in the member cluster and give --agent "+name+"=http://127.0.0.1:9094")
			continue
		}
		body, err := get(ctx, opts.HTTP, url, "/debug/view")
		if err != nil {
			add("xDS", Fail, "the agent does not answer: "+err.Error(),
				"the agent of "+name+" is down or not at "+url+": check its pod in the member cluster (kubectl -n meshfed-system get pods; its logs)")
			continue
		}
		v := &clusteragent.DebugView{}
		if err := json.Unmarshal(body, v); err != nil {
			add("xDS", Fail, url+"/debug/view: "+err.Error(), "give --agent "+name+"= the agent's --debug-addr")
			continue
		}
		switch {
		case v.Cluster != name:
			add("xDS", Fail, fmt.Sprintf("the agent at %s is cluster %q's", url, v.Cluster), "give --agent "+name+"= the address of "+name+"'s agent")
			continue
		case v.Source == "live" && v.HubReachable:
			add("xDS", OK, fmt.Sprintf("serving the live view of %d clusters and %d global services", len(v.Clusters), len(v.GlobalServices)), "")
		case v.Source == "live" || v.Source == "restored":
			add("xDS", Warn, fmt.Sprintf("serving its %s view, but it cannot read the hub's etcd now", v.Source),
				"proxies get the last view and no change from other clusters: check the agent's connection to the hub's etcd (its logs; meshfed_agent_hub_reachable)")
		default:
			add("xDS", Fail, "no view to serve: the agent has not listed the hub's etcd yet and restored no snapshot",
				"check the agent's logs and its connection to the hub's etcd")
		}
		metrics, err := scrape(ctx, opts.HTTP, url)
		if err != nil {
			add("proxies", Warn, "not checked: "+err.Error(), "give --agent "+name+"= an address that serves the agent's /metrics too (its --metrics-addr)")
			continue
		}
		groups, _ := metrics.sum("meshfed_xds_groups")
		nacks, _ := metrics.sum("meshfed_xds_nacks_total")
		detail := fmt.Sprintf("proxy groups connected: %.0f; responses rejected since start: %.0f", groups, nacks)
		if nacks > 0 {
			add("proxies", Warn, detail, "a proxy rejected what the agent served: its logs name the resource; see meshfed_xds_nacks_total{type}")
		} else {
			add("proxies", OK, detail, "")
		}
		var down []string
		for _, s := range metrics.samples("meshfed_xds_remote_gateway_down") {
			if s.value > 0 {
				down = append(down, s.labels["gateway"])
			}
		}
		slices.Sort(down)
		if len(down) > 0 {
			add("remote gateways", Warn, "failing the agent's probe: "+strings.Join(down, ", "),
				"check those clusters' east-west gateways (their pods and LoadBalancer Services on 15443)")
		}
	}
}
