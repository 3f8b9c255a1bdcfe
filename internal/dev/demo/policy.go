package demo

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

const (
	// canaryWeight is the percentage of cart's calls act two's TrafficPolicy sends
	// to beta, and canaryTolerance how far the share seen may stray from it
	// (percentage points): over canaryCalls calls, almost four standard deviations.
	canaryWeight, canaryTolerance = 10, 5
	canaryCalls                   = 500
	// method is what the demo's clients call (the echo service's).
	method = testgrpc.TestService_UnaryCall_FullMethodName
)

// policyAct is the demo's second act: a canary split and an authorization rule,
// written once on the hub, then deleted.
func policyAct(ctx context.Context, opts Options, s *sandbox.Sandbox, hub client.Client, conn *grpc.ClientConn,
	run func(name string, conn *grpc.ClientConn, n int, check func(*phase) string, during func()),
	steadyIn func(cluster string) func(*phase) string, say func(string, ...any)) error {
	say("== 4. canary: a TrafficPolicy on the hub sends %d%% of cart's calls to its copies in beta", canaryWeight)
	tp := &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Spec: v1.TrafficPolicySpec{
		GlobalService: "cart",
		Subsets:       []v1.Subset{{Name: "canary", Clusters: []v1.ClusterName{"beta"}}},
		Routes: []v1.TrafficRoute{{Name: "canary", Split: []v1.WeightedSubset{
			{Subset: "", Weight: 100 - canaryWeight}, {Subset: "canary", Weight: canaryWeight}}}},
	}}
	if err := hub.Create(ctx, tp); err != nil {
		return err
	}
	if err := programmed(ctx, hub, tp, &tp.Status, []string{"alpha"}, say); err != nil {
		return err
	}
	run(fmt.Sprintf("canary, %d%% to beta", canaryWeight), conn, max(canaryCalls, opts.Requests), func(p *phase) string {
		by := p.byCluster()
		share := 100 * float64(by["beta"]) / float64(p.calls)
		say("   %d of %d calls (%.1f%%) landed in beta, the canary; the rest in alpha, as before", by["beta"], p.calls, share)
		if p.failed > 0 || p.denied > 0 || by["beta"]+by["alpha"] != p.calls || math.Abs(share-canaryWeight) > canaryTolerance {
			return fmt.Sprintf("%.1f%% in beta, want %d%% ± %d%% and the rest in alpha without failures", share, canaryWeight, canaryTolerance)
		}
		return ""
	}, nil)
	say("   $ meshfedctl policy explain --from alpha/shop/frontend --to shop/cart --method %s", method)
	out, err := policyExplain(ctx, opts, "alpha/shop/frontend")
	say("%s", indent(out))
	if err != nil {
		return err
	}

	say("== 5. authorization: an AuthorizationPolicy on the hub lets only alpha's shop/frontend call cart")
	ap := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-callers"}, Spec: v1.AuthorizationPolicySpec{
		GlobalService: "cart", Action: v1.AuthorizationAllow,
		Rules: []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{
			Clusters: []v1.ClusterName{"alpha"}, Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}},
	}}
	if err := hub.Create(ctx, ap); err != nil {
		return err
	}
	// Every cluster's cart servers enforce it: wait for all of them.
	if err := programmed(ctx, hub, ap, &ap.Status, []string{"alpha", "beta", "gamma"}, say); err != nil {
		return err
	}
	beta := s.Cluster("beta")
	betaCerts := filepath.Join(beta.CertDir, "shop", "frontend")
	if err := waitFile(ctx, filepath.Join(betaCerts, "tls.crt")); err != nil {
		return err
	}
	betaConn, err := meshClient(beta, betaCerts)
	if err != nil {
		return err
	}
	defer betaConn.Close()
	for _, c := range []struct {
		from, want string
		conn       *grpc.ClientConn
		check      func(*phase) string
	}{
		{"alpha/shop/frontend", "ALLOWED", conn, func(p *phase) string {
			if p.failed > 0 || p.denied > 0 {
				return "alpha's frontend had calls refused or failed"
			}
			return ""
		}},
		{"beta/shop/frontend", "DENIED", betaConn, func(p *phase) string {
			if p.denied != p.calls {
				return fmt.Sprintf("%d of beta's frontend's %d calls denied, want all", p.denied, p.calls)
			}
			return ""
		}},
	} {
		cluster, _, _ := strings.Cut(c.from, "/")
		out, err := policyExplain(ctx, opts, c.from)
		if err != nil {
			say("%s", indent(out))
			return err
		}
		verdict := verdictOf(out)
		run(fmt.Sprintf("%s's frontend, %s", cluster, strings.ToLower(c.want)), c.conn, opts.Requests, func(p *phase) string {
			if problem := c.check(p); problem != "" {
				return problem
			}
			if !strings.HasPrefix(verdict, c.want) {
				return fmt.Sprintf("policy explain says %q, want %s", verdict, c.want)
			}
			return ""
		}, nil)
		say("   policy explain --from %s: %s", c.from, verdict)
	}

	say("== 6. both policies deleted on the hub: traffic as before")
	for _, o := range []client.Object{tp, ap} {
		if err := hub.Delete(ctx, o); err != nil {
			return err
		}
	}
	if err := until(ctx, func() bool {
		a, b := send(ctx, conn, 10), send(ctx, betaConn, 10)
		return a.byCluster()["alpha"] == 10 && b.byCluster()["beta"] == 10
	}); err != nil {
		return fmt.Errorf("traffic never went back to what it was without the policies: %w", err)
	}
	run("steady, policies deleted", conn, opts.Requests, steadyIn("alpha"), nil)
	run("beta's frontend, policies deleted", betaConn, opts.Requests, func(p *phase) string {
		if p.failed > 0 || p.denied > 0 || p.byCluster()["beta"] != p.calls {
			return "calls of beta's frontend failed, were refused, or left beta"
		}
		return ""
	}, nil)
	return nil
}

// programmed waits until the hub says o is Programmed for its current generation in
// at least the clusters want, and says so.
func programmed(ctx context.Context, hub client.Client, o client.Object, st *v1.PolicyStatus, want []string, say func(string, ...any)) error {
	kind := strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1alpha1.")
	begin := time.Now()
	var took []string
	err := until(ctx, func() bool {
		if hub.Get(ctx, client.ObjectKeyFromObject(o), o) != nil {
			return false
		}
		c := meta.FindStatusCondition(st.Conditions, v1.ConditionProgrammed)
		if st.ObservedGeneration != o.GetGeneration() || c == nil || c.Status != metav1.ConditionTrue {
			return false
		}
		took = nil
		for _, pc := range st.Clusters {
			if pc.Programmed && pc.Generation == o.GetGeneration() {
				took = append(took, pc.Cluster)
			}
		}
		for _, w := range want {
			if !strings.Contains(" "+strings.Join(took, " ")+" ", " "+w+" ") {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%s %s never Programmed in %s: %w (status: %+v)", kind, o.GetName(), strings.Join(want, ", "), err, *st)
	}
	say("   hub: %s %s/%s Programmed=True after %s; clusters whose proxies took generation %d: %s",
		kind, o.GetNamespace(), o.GetName(), time.Since(begin).Round(100*time.Millisecond), o.GetGeneration(), strings.Join(took, ", "))
	return nil
}

// policyExplain runs `meshfedctl policy explain` for a call of the demo's method to
// shop/cart from identity from (<cluster>/<namespace>/<serviceaccount>).
func policyExplain(ctx context.Context, opts Options, from string) (string, error) {
	out, err := exec.CommandContext(ctx, opts.Meshfedctl, "policy", "explain", "--dir", opts.Dir,
		"--from", from, "--to", "shop/cart", "--method", method).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("meshfedctl policy explain --from %s: %w", from, err)
	}
	return string(out), nil
}

// verdictOf is the authorization line of policy explain's text output: "ALLOWED by
// …" or "DENIED by …".
func verdictOf(explained string) string {
	for _, l := range strings.Split(explained, "\n") {
		if v, ok := strings.CutPrefix(l, "authorization"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(no authorization line)"
}

func indent(s string) string {
	return "     " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n     ")
}
