package clusteragent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
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
	// TrafficPolicies and AuthorizationPolicies are the hub's records the xDS
	// builder serves from (`meshfedctl policy explain` reads them here).
	TrafficPolicies       []*model.TrafficPolicy       `json:"trafficPolicies"`
	AuthorizationPolicies []*model.AuthorizationPolicy `json:"authorizationPolicies"`
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
		GlobalServices: v.GlobalServices(), Policies: v.Policies(), Rejections: v.Rejections(),
		TrafficPolicies: v.TrafficPolicies(), AuthorizationPolicies: v.AllAuthorizationPolicies()}
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

// surfaces are the agent's HTTP surfaces, each a set of handlers on a mux: health
// (/healthz, /readyz), metrics (/metrics) and debug (/debug/..., and /metrics too).
// Each is served on the address its option gives; surfaces with the same address
// share a listener.
type surfaces struct {
	health, metrics, debug func(*http.ServeMux)
}

func debugSurfaces(cluster string, v *view.View, explain explainer, metrics prometheus.Gatherer) surfaces {
	return surfaces{
		health: func(mux *http.ServeMux) {
			mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }) //nolint:errcheck
			mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
				if !v.HasSynced() {
					http.Error(w, "the view has not completed its first list of the hub's etcd", http.StatusServiceUnavailable)
					return
				}
				w.Write([]byte("ok")) //nolint:errcheck
			})
		},
		metrics: func(mux *http.ServeMux) {
			mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
		},
		debug: func(mux *http.ServeMux) { debugHandlers(mux, cluster, v, explain) },
	}
}

// listenHTTP listens on the address of every surface that is on ("0" is off) and
// returns a server per address, to run until its context ends. A surface beyond
// loopback is logged: /metrics and /debug are on loopback unless opened.
func listenHTTP(opts Options, s surfaces, log logr.Logger) (map[string]func(context.Context) error, error) {
	muxes := map[string]*http.ServeMux{}
	var order []string
	for _, sf := range []struct {
		name, addr string
		add        func(*http.ServeMux)
	}{{"health", opts.HTTPAddr, s.health}, {"metrics", opts.MetricsAddr, s.metrics}, {"debug", opts.DebugAddr, s.debug}} {
		if sf.addr == "0" {
			continue
		}
		mux, ok := muxes[sf.addr]
		if !ok {
			mux = http.NewServeMux()
			muxes[sf.addr] = mux
			order = append(order, sf.addr)
		}
		sf.add(mux)
		if sf.name == "debug" && opts.MetricsAddr != sf.addr {
			// One port-forward to the debug address reads all an operator needs
			// (meshfedctl check --agent): the view, explain and the metrics.
			s.metrics(mux)
		}
		if sf.name != "health" && !isLoopback(sf.addr) {
			log.Info("serving an agent surface beyond loopback: anyone who reaches it reads it", "surface", sf.name, "addr", sf.addr)
		}
	}
	out := map[string]func(context.Context) error{}
	var listeners []net.Listener
	for _, addr := range order {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close() //nolint:errcheck
			}
			return nil, fmt.Errorf("agent HTTP server on %s: %w", addr, err)
		}
		listeners = append(listeners, l)
		server := &http.Server{Handler: muxes[addr], ReadHeaderTimeout: 10 * time.Second}
		out[addr] = func(ctx context.Context) error { return serveHTTP(ctx, server, l) }
	}
	return out, nil
}

// debugHandlers adds /debug/view, /debug/explain, /debug/pprof and the test hooks to
// mux.
func debugHandlers(mux *http.ServeMux, cluster string, v *view.View, explain explainer) {
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
			for _, sub := range e.Subsets {
				state := ""
				if !sub.Live {
					state = " (no healthy endpoint: left out of splits)"
				}
				fmt.Fprintf(w, "subset %q, cluster %s%s\n%s\n", sub.Subset, sub.Cluster, state, sub.Text)
			}
		}
	})
	// Profiles, as istiod and cilium-agent serve them on their debug ports.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, hook := range debugHooks {
		hook(mux, v)
	}
	mux.HandleFunc("/debug/view", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(Debug(cluster, v, time.Now())) //nolint:errcheck
	})
}

func sortServices(s []*model.ServiceEndpoints) {
	slices.SortFunc(s, func(a, b *model.ServiceEndpoints) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}
