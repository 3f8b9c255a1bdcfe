package xds_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/clusteragent/internal/locality"
	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// agrees reports whether an explanation's priorities are exactly the localities,
// priorities and weights of the load assignment the server set for the client's group.
func agrees(t *testing.T, s *xds.Server, g xds.Group, e xds.Explanation) error {
	t.Helper()
	cla, err := s.Served(g, xds.ClusterName(e.Hostname, e.Port))
	if err != nil {
		return err
	}
	var served, explained []string
	for _, l := range cla.GetEndpoints() {
		served = append(served, fmt.Sprintf("%d %s/%s w%d", l.GetPriority(), l.GetLocality().GetSubZone(),
			l.GetLocality().GetZone(), l.GetLoadBalancingWeight().GetValue()))
	}
	for p, entries := range e.Table.Priorities {
		for _, en := range entries {
			explained = append(explained, fmt.Sprintf("%d %s/%s w%d", p, en.Cluster, en.Zone, en.Weight))
		}
	}
	slices.Sort(served)
	slices.Sort(explained)
	if !slices.Equal(served, explained) {
		return fmt.Errorf("explain shows %v, the server serves %v\n%s", explained, served, e.Text)
	}
	return nil
}

// TestExplainDuringFailbackHold: while a recovered zone is held back, explain shows the
// table the proxies get (the zone excluded, with the hold as its reason), not the
// table they would get without the hold.
func TestExplainDuringFailbackHold(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.put(keyspace.Policy("shop", "hold"), &model.Policy{Namespace: "shop", Name: "hold",
		LocalityPreference: "Zone", FallbackToAny: true, MinHealthyPercent: 70,
		FailbackHold: metav1.Duration{Duration: time.Hour}})
	w.put(keyspace.GlobalService("shop", "cart"), &model.GlobalService{Namespace: "shop", Name: "cart",
		Hostname: "cart.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}, Policy: "hold"})
	s := startServer(t, w, "alpha")
	g := xds.Group{Region: "us-east", Zone: "us-east-1a"}
	conn := client(t, s.Addr(), g.Region, g.Zone)

	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
	w.setReady("alpha", "us-east-1a", false)
	eventuallyAll(t, ctx, conn, "alpha/us-east-1b")
	w.setReady("alpha", "us-east-1a", true)

	testutil.Eventually(t, 10*time.Second, "explain to show the failback hold", func() error {
		out, err := s.Explain("shop", "cart", g.Zone)
		if err != nil {
			return err
		}
		e := out[0]
		held := slices.ContainsFunc(e.Table.Excluded, func(en locality.Entry) bool {
			return en.Cluster == "alpha" && en.Zone == "us-east-1a" && strings.Contains(en.Reason, "failback hold")
		})
		if !held {
			return fmt.Errorf("alpha/us-east-1a is not excluded for its failback hold:\n%s", e.Text)
		}
		return agrees(t, s, g, e)
	})
	// The proxies do get the held table.
	got, err := landing(ctx, conn, 20)
	if err != nil || got["alpha/us-east-1b"] != 20 {
		t.Errorf("during the hold, requests landed %v (err %v), want all on alpha/us-east-1b", got, err)
	}
}

// TestExplainListsEveryExclusion: every cluster with a member Service of the global
// service that contributes nothing is listed as excluded, with its reason.
func TestExplainListsEveryExclusion(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	w := newWorldAt(t, clk)
	// beta renamed the port: it serves nothing of the global port "grpc".
	renamed := *w.records["beta"]
	renamed.Ports = []model.ServicePort{{Name: "grpc-v2", Port: 8080}}
	renamed.Endpoints = nil
	for _, e := range w.records["beta"].Endpoints {
		e.Ports = []model.EndpointPort{{Name: "grpc-v2", Port: e.Ports[0].Port}}
		renamed.Endpoints = append(renamed.Endpoints, e)
	}
	w.records["beta"] = &renamed
	w.put(keyspace.ServiceEndpoints("beta", "shop", "cart"), &renamed)
	// gamma is on another network, and its gateway does not answer.
	w.put(keyspace.ClusterInfo("gamma"), &model.ClusterInfo{Name: "gamma", Region: "eu-west",
		Zones: []string{"eu-west-1a", "eu-west-1b"}, Network: "net-g", AddressRanges: []string{"127.0.0.0/8"},
		Gateways: []model.Gateway{{Address: "127.0.0.1", Port: 1}}})
	// delta never wrote a heartbeat; the others do (below), after the server has run
	// for longer than dropAfter.
	w.put(keyspace.ClusterInfo("delta"), &model.ClusterInfo{Name: "delta", Region: "us-east",
		Zones: []string{"us-east-1e"}, Network: "default"})
	w.put(keyspace.ServiceEndpoints("delta", "shop", "cart"), &model.ServiceEndpoints{Namespace: "shop", Name: "cart",
		Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}, Endpoints: []model.Endpoint{{Address: "10.9.0.1",
			Zone: "us-east-1e", Ready: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}}}})
	w.put(keyspace.Policy("shop", "quick"), &model.Policy{Namespace: "shop", Name: "quick",
		LocalityPreference: "Zone", FallbackToAny: true, MinHealthyPercent: 70,
		DemoteAfter: metav1.Duration{Duration: time.Minute}, DropAfter: metav1.Duration{Duration: 2 * time.Minute}})
	w.put(keyspace.GlobalService("shop", "cart"), &model.GlobalService{Namespace: "shop", Name: "cart",
		Hostname: "cart.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}, Policy: "quick"})
	// alpha's second zone has no ready endpoint.
	w.setReady("alpha", "us-east-1b", false)
	s := startServer(t, w, "alpha")
	clk.Step(3 * time.Minute)
	for _, c := range []string{"alpha", "beta", "gamma"} {
		w.put(keyspace.ClusterHeartbeat(c), &model.Heartbeat{Time: clk.Now(), TTL: 15, Agent: c})
	}

	want := map[string]string{ // cluster/zone -> reason; zone "" for a whole cluster
		"beta/":            `no port named "grpc"`,
		"gamma/eu-west-1a": "gateway",
		"gamma/eu-west-1b": "gateway",
		"delta/":           "dropped",
		"alpha/us-east-1b": "no healthy endpoints",
	}
	testutil.Eventually(t, 10*time.Second, "explain to list every exclusion", func() error {
		out, err := s.Explain("shop", "cart", "us-east-1a")
		if err != nil {
			return err
		}
		e := out[0]
		got := map[string]string{}
		for _, x := range e.Table.Excluded {
			if x.Reason == "" {
				return fmt.Errorf("%s/%s is excluded without a reason:\n%s", x.Cluster, x.Zone, e.Text)
			}
			got[x.Cluster+"/"+x.Zone] = x.Reason
		}
		for k, reason := range want {
			if !strings.Contains(got[k], reason) {
				return fmt.Errorf("%s: excluded for %q, want a reason with %q:\n%s", k, got[k], reason, e.Text)
			}
			if !strings.Contains(e.Text, got[k]) {
				return fmt.Errorf("the text lacks %s's reason %q:\n%s", k, got[k], e.Text)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("excluded %v, want exactly %v", got, want)
		}
		t.Logf("explain:\n%s", e.Text)
		return nil
	})
}

// TestTargetsExcluded: the member clusters that serve a port nothing are listed with
// their reason, and only those: a cluster without a member Service is not.
func TestTargetsExcluded(t *testing.T) {
	v := newWorld(t).v
	// delta has a member Service but is not registered (no ClusterInfo).
	v.OnUpsert(keyspace.ServiceEndpoints("delta", "shop", "cart"), &model.ServiceEndpoints{Namespace: "shop", Name: "cart",
		Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}})
	// beta's member Service has the port but no endpoints.
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "cart"), &model.ServiceEndpoints{Namespace: "shop", Name: "cart",
		Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}})
	// epsilon is registered, without a member Service.
	v.OnUpsert(keyspace.ClusterInfo("epsilon"), &model.ClusterInfo{Name: "epsilon", Region: "us-east", Network: "default"})
	now := time.Now()
	targets := xds.Targets(xds.Input{Self: "alpha", Clusters: v.Clusters(), Globals: v.GlobalServices(), Since: now, Now: now})
	got := map[string]string{}
	for _, x := range targets[0].Excluded {
		got[x.Cluster+"/"+x.Zone] = x.Reason
	}
	want := map[string]string{
		"beta/":  `Service shop/cart has no endpoints on port "grpc"`,
		"delta/": "cluster not registered",
	}
	if !maps.Equal(got, want) {
		t.Errorf("excluded %v, want %v", got, want)
	}
}

// TestExplainShowsRefusedClaims: what readers refuse of a cluster's record (package
// admit) is never served and is shown as exclusions with their reasons, and so is a
// cluster the global service does not authorize.
func TestExplainShowsRefusedClaims(t *testing.T) {
	w := newWorld(t)
	claim := *w.records["beta"]
	claim.Endpoints = slices.Clone(claim.Endpoints)
	for _, addr := range []string{"127.0.9.9", "127.0.9.9", "127.0.9.9"} { // alpha's zone, three times
		claim.Endpoints = append(claim.Endpoints, model.Endpoint{Address: addr, Zone: "us-east-1a", Ready: true,
			Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
	}
	claim.Endpoints = append(claim.Endpoints,
		model.Endpoint{Address: "169.254.169.254", Zone: "us-east-1c", Ready: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}},
		model.Endpoint{Address: "127.0.9.8", Zone: "evil-zone-9", Ready: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
	w.put(keyspace.ServiceEndpoints("beta", "shop", "cart"), &claim)

	explain := func() string {
		now := time.Now()
		targets := xds.Targets(xds.Input{Self: "alpha", Clusters: w.v.Clusters(), Globals: w.v.GlobalServices(), Since: now, Now: now})
		c := xds.Client{Cluster: "alpha", Region: "us-east", Zone: "us-east-1a"}
		for _, l := range targets[0].Localities {
			if l.Cluster == "beta" && (l.Zone == "us-east-1a" || l.Zone == "evil-zone-9") {
				t.Errorf("beta serves a locality in zone %s", l.Zone)
			}
			for _, e := range l.Healthy {
				if e.Address == "169.254.169.254" {
					t.Errorf("169.254.169.254 is served")
				}
			}
		}
		return xds.Table(c, targets[0]).String()
	}
	text := explain()
	for zone, want := range map[string]string{
		"us-east-1a":  "excluded: beta claims zone us-east-1a it does not declare (3 endpoints)",
		"evil-zone-9": "excluded: beta claims zone evil-zone-9 it does not declare",
		"-":           "excluded: 169.254.169.254 is link-local",
	} {
		row := slices.IndexFunc(strings.Split(text, "\n"), func(line string) bool {
			return strings.HasSuffix(line, want) && strings.Contains(line, " "+zone+" ")
		})
		if row < 0 {
			t.Errorf("explain lacks a row of zone %s with %q:\n%s", zone, want, text)
		}
	}

	// A global service that names other clusters: beta contributes nothing, and
	// says why.
	w.put(keyspace.GlobalService("shop", "cart"), &model.GlobalService{Namespace: "shop", Name: "cart",
		Hostname: "cart.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}, Clusters: []string{"alpha", "gamma"}})
	text = explain()
	if !strings.Contains(text, "excluded: beta is not authorized to provide shop/cart (its clusters: alpha, gamma)") {
		t.Errorf("explain does not show beta's exclusion:\n%s", text)
	}
	if strings.Contains(text, "claims zone") {
		t.Errorf("an unauthorized cluster's record is explained further:\n%s", text)
	}
	t.Logf("explain:\n%s", text)
}
