package clusteragent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// DebugView is the JSON of /debug/view: the agent's imported view.
type DebugView struct {
	Cluster string `json:"cluster"`
	// Synced: the agent holds a complete view, live or restored, and serves it.
	Synced bool `json:"synced"`
	// Source is where the view comes from: "live" (the hub's etcd), "restored" (the
	// snapshot of an earlier run, until the hub answers) or "none".
	Source string `json:"source"`
	// Restored describes the snapshot while Source is "restored".
	Restored *view.Restored `json:"restored,omitempty"`
	// HubReachable: the agent can read the hub's etcd now.
	HubReachable   bool                  `json:"hubReachable"`
	Clusters       []DebugCluster        `json:"clusters"`
	GlobalServices []model.GlobalService `json:"globalServices"`
	Policies       []*model.Policy       `json:"policies"`
	// Rejections is what the agent refuses of other clusters' records (package
	// admit), by cluster and reason.
	Rejections []view.Rejection `json:"rejections"`
}

// DebugCluster is one cluster in DebugView.
type DebugCluster struct {
	Name      string             `json:"name"`
	Info      *model.ClusterInfo `json:"info,omitempty"`
	Connected bool               `json:"connected"`
	// HeartbeatAge is how long ago this agent last saw the cluster's heartbeat.
	HeartbeatAge string                    `json:"heartbeatAge,omitempty"`
	Synced       bool                      `json:"synced"`
	Services     []*model.ServiceEndpoints `json:"services"`
}

// Debug returns the view as DebugView.
func Debug(cluster string, v *view.View, now time.Time) DebugView {
	out := DebugView{Cluster: cluster, Synced: v.HasSynced(), Source: "none", HubReachable: v.HubReachable(),
		GlobalServices: v.GlobalServices(), Policies: v.Policies(), Rejections: v.Rejections()}
	if restored, serving := v.RestoredFrom(); serving {
		out.Source, out.Restored = "restored", &restored
	} else if v.HasLive() {
		out.Source = "live"
	}
	for _, c := range v.Clusters() {
		dc := DebugCluster{Name: c.Name, Info: c.Info, Connected: c.Connected(), Synced: c.Synced != nil, Services: []*model.ServiceEndpoints{}}
		if !c.LastHeartbeat.IsZero() {
			dc.HeartbeatAge = now.Sub(c.LastHeartbeat).Round(time.Millisecond).String()
		}
		for _, s := range c.Services {
			dc.Services = append(dc.Services, s)
		}
		sortServices(dc.Services)
		out.Clusters = append(out.Clusters, dc)
	}
	return out
}

// debugHooks add test-only handlers (fault.go, built with the meshfedtesthooks tag);
// none in a product binary.
var debugHooks []func(*http.ServeMux, *view.View)

// explainer answers /debug/explain: the xDS server's Explain.
type explainer func(namespace, name, zone string) ([]xds.Explanation, error)

func debugHandler(cluster string, v *view.View, explain explainer, metrics prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ns, name, ok := strings.Cut(q.Get("service"), "/")
		if !ok || ns == "" || name == "" {
			http.Error(w, "give service=<namespace>/<name>, and zone=<zone> for the client's zone", http.StatusBadRequest)
			return
		}
		out, err := explain(ns, name, q.Get("zone"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if q.Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out) //nolint:errcheck
			return
		}
		for _, e := range out {
			fmt.Fprintf(w, "%s:%d\n%s\n", e.Hostname, e.Port, e.Text)
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }) //nolint:errcheck
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !v.HasSynced() {
			http.Error(w, "the view has not completed its first list of the hub's etcd", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok")) //nolint:errcheck
	})
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	for _, hook := range debugHooks {
		hook(mux, v)
	}
	mux.HandleFunc("/debug/view", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(Debug(cluster, v, time.Now())) //nolint:errcheck
	})
	return mux
}

func sortServices(s []*model.ServiceEndpoints) {
	slices.SortFunc(s, func(a, b *model.ServiceEndpoints) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}
