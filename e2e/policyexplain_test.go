package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// testPolicyExplain runs in TestFederation's sandbox, where shop/cart has three
// endpoints in beta, two ready: `meshfedctl policy explain` answers from the caller's
// agent with the hub's policies once they are served, and refuses bad input with
// what to fix. The policies are deleted at the end.
func testPolicyExplain(ctx context.Context, t *testing.T, s *sandbox.Sandbox, hub client.Client) {
	tp := &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Spec: v1.TrafficPolicySpec{
		GlobalService: "cart",
		Subsets:       []v1.Subset{{Name: "canary", Clusters: []v1.ClusterName{"beta"}}},
		Routes: []v1.TrafficRoute{
			{Name: "reads", Match: v1.RouteMatch{Methods: []v1.MethodPattern{"/shop.Cart/Get"}}, Timeout: &metav1.Duration{Duration: 100 * time.Millisecond},
				Retries: &v1.RetryPolicy{Attempts: 3}},
			{Name: "writes", Match: v1.RouteMatch{Methods: []v1.MethodPattern{"/shop.Cart/*"}},
				Split: []v1.WeightedSubset{{Subset: "", Weight: 90}, {Subset: "canary", Weight: 10}}},
		},
	}}
	frontendOnly := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-only"}, Spec: v1.AuthorizationPolicySpec{
		GlobalService: "cart", Action: v1.AuthorizationAllow,
		Rules: []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{Clusters: []v1.ClusterName{"alpha", "gamma"}, Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}},
	}}
	noGammaWrites := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "no-gamma-writes"}, Spec: v1.AuthorizationPolicySpec{
		Action: v1.AuthorizationDeny,
		Rules:  []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{Clusters: []v1.ClusterName{"gamma"}}}, Methods: []v1.MethodPattern{"/shop.Cart/Add"}}},
	}}
	objs := []client.Object{tp, frontendOnly, noGammaWrites}
	for _, o := range objs {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, o := range objs {
			if err := hub.Delete(ctx, o); err != nil {
				t.Error(err)
			}
		}
	}()

	start := time.Now()
	explain := func(args ...string) (*explained, string, error) {
		cmd := exec.Command(meshfedctlBin(), append([]string{"policy", "explain", "--dir", s.Dir, "-o", "json"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, stderr.String(), err
		}
		r := &explained{}
		if err := json.Unmarshal(stdout.Bytes(), r); err != nil {
			t.Fatalf("policy explain -o json: %v\n%s", err, stdout.String())
		}
		return r, stderr.String(), nil
	}
	// live: every policy is Accepted on the hub and in the caller's agent's view.
	live := func(r *explained) error {
		if len(r.Policies) != 3 {
			return fmt.Errorf("policies on the hub: %+v", r.Policies)
		}
		for _, p := range r.Policies {
			if !p.Served || p.Accepted != "True" || p.ResolvedRefs != "True" {
				return fmt.Errorf("%s %s not live: %+v", p.Kind, p.Name, p)
			}
		}
		return nil
	}

	var reads, gammaWrite, gammaRead, betaRead *explained
	testutil.Eventually(t, waitLong, "policy explain shows the policies served", func() error {
		var err error
		var stderr string
		for _, c := range []struct {
			out          *(*explained)
			from, method string
		}{
			{&reads, "alpha/shop/frontend", "/shop.Cart/Get"},
			{&gammaWrite, "gamma/shop/frontend", "/shop.Cart/Add"},
			{&gammaRead, "gamma/shop/frontend", "/shop.Cart/Get"},
			{&betaRead, "beta/shop/frontend", "/shop.Cart/Get"},
		} {
			if *c.out, stderr, err = explain("--from", c.from, "--to", "shop/cart", "--method", c.method); err != nil {
				return fmt.Errorf("%v: %s", err, stderr)
			}
			if err := live(*c.out); err != nil {
				return fmt.Errorf("from %s: %w", c.from, err)
			}
		}
		return nil
	})
	t.Logf("policies served and explained in %s", time.Since(start).Round(time.Millisecond))

	if a := reads.Authorization; !a.Allowed || a.DecidedBy != "Allow shop/frontend-only rules[0]" || a.NamespaceDefault != "Allow" {
		t.Errorf("alpha's frontend reading: %+v, want allowed by frontend-only's rule", a)
	}
	if g := reads.Routing; g.Route != "reads" || g.Timeout.Duration != 100*time.Millisecond || g.Retries == nil ||
		g.Retries.Attempts != 3 || strings.Join(g.Retries.On, ",") != string(v1.DefaultRetryOn) || g.Retries.BackoffBase.Duration != v1.DefaultRetryBackoffBase {
		t.Errorf("alpha's read: routing %+v, want route reads with the hub's defaults resolved", g)
	}
	if a := gammaWrite.Authorization; a.Allowed || a.DecidedBy != "Deny shop/no-gamma-writes rules[0]" {
		t.Errorf("gamma's frontend writing: %+v, want denied by no-gamma-writes over frontend-only", a)
	}
	wantSplit := []subsetShare{
		{Subset: "", Weight: 90, Endpoints: []clusterEndpoints{}},
		{Subset: "canary", Weight: 10, Endpoints: []clusterEndpoints{{Cluster: "beta", Ready: 2, Total: 3}}},
	}
	if g := gammaWrite.Routing; g.Route != "writes" || fmt.Sprint(g.Split) != fmt.Sprint(wantSplit) {
		t.Errorf("gamma's write: routing %+v, want route writes split %+v", g, wantSplit)
	}
	if a := gammaRead.Authorization; !a.Allowed {
		t.Errorf("gamma's frontend reading: %+v, want allowed: the Deny names only Add", a)
	}
	if a := betaRead.Authorization; a.Allowed || !strings.Contains(a.DecidedBy, "no Allow rule matches") {
		t.Errorf("beta's frontend, a cluster frontend-only leaves out: %+v, want denied", a)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "alpha/frontend", "--to", "shop/cart"}, "use <cluster>/<namespace>/<serviceaccount>"},
		{[]string{"--from", "alpha/shop/frontend", "--to", "shop/nope"}, "no such global service (global services of namespace shop: cart)"},
		{[]string{"--from", "alpha/shop/frontend", "--to", "shop/cart", "--method", "shop.Cart/Get"}, "use the full gRPC method name"},
		{[]string{"--from", "delta/shop/frontend", "--to", "shop/cart"}, `no cluster "delta" in the sandbox`},
	} {
		if _, stderr, err := explain(bad.args...); err == nil || !strings.Contains(stderr, bad.want) {
			t.Errorf("policy explain %v: %v, %q; want an error saying %q", bad.args, err, stderr, bad.want)
		}
	}
	out, err := exec.Command(meshfedctlBin(), "policy", "explain", "--dir", s.Dir, "--from", "gamma/shop/frontend", "--to", "shop/cart",
		"--method", "/shop.Cart/Add", "--header", "x-user=ann").CombinedOutput()
	if err != nil {
		t.Fatalf("policy explain: %v\n%s", err, out)
	}
	t.Logf("meshfedctl policy explain --from gamma/shop/frontend --to shop/cart --method /shop.Cart/Add:\n%s", out)
}

// explained is the part of `meshfedctl policy explain -o json` (policyexplain.Result,
// internal to meshfedctl) the test reads.
type explained struct {
	Authorization struct {
		Allowed          bool   `json:"allowed"`
		DecidedBy        string `json:"decidedBy"`
		NamespaceDefault string `json:"namespaceDefault"`
	} `json:"authorization"`
	Routing struct {
		Route   string          `json:"route"`
		Timeout metav1.Duration `json:"timeout"`
		Retries *struct {
			Attempts    int32           `json:"attempts"`
			On          []string        `json:"on"`
			BackoffBase metav1.Duration `json:"backoffBase"`
		} `json:"retries"`
		Split []subsetShare `json:"split"`
	} `json:"routing"`
	Policies []struct {
		Kind         string `json:"kind"`
		Name         string `json:"name"`
		Served       bool   `json:"served"`
		Accepted     string `json:"accepted"`
		ResolvedRefs string `json:"resolvedRefs"`
	} `json:"policies"`
}

type subsetShare struct {
	Subset    string             `json:"subset"`
	Weight    int32              `json:"weight"`
	Endpoints []clusterEndpoints `json:"endpoints"`
}

type clusterEndpoints struct {
	Cluster string `json:"cluster"`
	Ready   int    `json:"ready"`
	Total   int    `json:"total"`
}
