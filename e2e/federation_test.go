package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/register"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

const waitLong = 90 * time.Second

func hubClient(t *testing.T, s *sandbox.Sandbox) client.Client {
	t.Helper()
	c, err := s.HubClient()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFederation is issue 3's acceptance: endpoints flow from one member cluster
// through the hub's etcd into every other agent's view, by GlobalService and by MCS
// ServiceExport, through updates, agent and hub crashes, and unregistration.
func TestFederation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Real listening processes for the endpoints, on a host of their own: Kubernetes
	// refuses loopback addresses in EndpointSlices.
	host := testnet.New(t, 6)
	var listen []string
	for _, a := range host.Addrs() {
		listen = append(listen, net.JoinHostPort(a.String(), "8080"))
	}
	host.Start(t, "echo", []string{meshfedTestBinary(t)}, echoEnv+"="+strings.Join(listen, ","))
	testutil.Eventually(t, 30*time.Second, "echo servers listening", func() error {
		for _, a := range listen {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})

	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		HeartbeatTTL: 6 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)
	alpha, beta, gamma := s.Cluster("alpha"), s.Cluster("beta"), s.Cluster("gamma")
	betaKube := kubernetes.NewForConfigOrDie(beta.Config())
	gammaKube := kubernetes.NewForConfigOrDie(gamma.Config())
	addr := func(i int) string { return host.Addr(i).String() }

	// expect waits until both observers' views equal the ground truth for key in cluster.
	expect := func(what, cluster, key string, want *service, observers ...*sandbox.Cluster) {
		t.Helper()
		for _, o := range observers {
			testutil.Eventually(t, waitLong, what+" as seen by "+o.Name, func() error {
				v, err := agentView(ctx, o.DebugAddr)
				if err != nil {
					return err
				}
				return matches(v, cluster, key, want)
			})

		}
	}

	// Endpoints are in the zones their cluster declares: readers drop the others.
	b1, b2 := beta.Zones[0], beta.Zones[1]
	cart := &service{namespace: "shop", name: "cart", port: 8080, endpoints: []endpoint{
		ready(addr(0), b1), ready(addr(1), b2),
		{addr: addr(2), zone: b2}, // not ready
	}}
	if err := cart.apply(ctx, betaKube); err != nil {
		t.Fatal(err)
	}
	gs := &v1.GlobalService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec:       v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}},
	}
	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	if err := hub.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}

	t.Run("exported by GlobalService", func(t *testing.T) {
		expect("cart published", "beta", "shop/cart", cart, alpha, gamma)
		testutil.Eventually(t, waitLong, "hub status", func() error {
			mc := &v1.MeshCluster{}
			if err := hub.Get(ctx, client.ObjectKey{Name: "beta"}, mc); err != nil {
				return err
			}
			if mc.Status.ExportedServices != 1 || mc.Status.ExportedEndpoints != 3 {
				return fmt.Errorf("beta status: %d services, %d endpoints", mc.Status.ExportedServices, mc.Status.ExportedEndpoints)
			}
			g := &v1.GlobalService{}
			if err := hub.Get(ctx, client.ObjectKeyFromObject(gs), g); err != nil {
				return err
			}
			if g.Status.ReadyEndpoints != 2 || g.Status.Hostname != "cart.shop.svc.clusterset.local" || len(g.Status.Clusters) != 1 {
				return fmt.Errorf("GlobalService status: %+v", g.Status)
			}
			return nil
		})

	})

	t.Run("policy explain", func(t *testing.T) { testPolicyExplain(ctx, t, s, hub) })

	t.Run("updates propagate", func(t *testing.T) {
		cart.endpoints = append(cart.endpoints, ready(addr(3), b1))     // scale up
		cart.endpoints[2].ready, cart.endpoints[2].serving = true, true // becomes ready
		cart.endpoints[0].ready, cart.endpoints[0].terminating = false, true
		if err := cart.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		expect("scaled up, readiness flipped", "beta", "shop/cart", cart, alpha, gamma)
		cart.endpoints = cart.endpoints[1:] // scale down
		if err := cart.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		expect("scaled down", "beta", "shop/cart", cart, alpha, gamma)
	})

	inventory := &service{namespace: "shop", name: "inventory", port: 8080, endpoints: []endpoint{
		ready(addr(4), gamma.Zones[0]), ready(addr(5), gamma.Zones[1]),
	}}
	t.Run("exported by ServiceExport alone", func(t *testing.T) {
		if err := inventory.apply(ctx, gammaKube); err != nil {
			t.Fatal(err)
		}
		expect("not exported yet", "gamma", "shop/inventory", nil, alpha, beta)
		mcs := mcsclient.NewForConfigOrDie(gamma.Config())
		se := &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "inventory"}}
		if _, err := mcs.MulticlusterV1alpha1().ServiceExports("shop").Create(ctx, se, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		expect("exported", "gamma", "shop/inventory", inventory, alpha, beta)
		inventory.endpoints[1].ready, inventory.endpoints[1].serving = false, false
		if err := inventory.apply(ctx, gammaKube); err != nil {
			t.Fatal(err)
		}
		expect("readiness", "gamma", "shop/inventory", inventory, alpha, beta)
	})

	t.Run("deletes propagate", func(t *testing.T) {
		tmp := &service{namespace: "shop", name: "tmp", labels: map[string]string{"tier": "tmp"}, port: 8080,
			endpoints: []endpoint{ready(addr(0), b1)}}
		if err := tmp.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		sel := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tmp"},
			Spec: v1.GlobalServiceSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "tmp"}},
				Ports: []v1.GlobalServicePort{{Port: 8080}}}}
		if err := hub.Create(ctx, sel); err != nil {
			t.Fatal(err)
		}
		expect("selected by label", "beta", "shop/tmp", tmp, alpha, gamma)
		if err := tmp.delete(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		expect("Service deleted", "beta", "shop/tmp", nil, alpha, gamma)
		if err := tmp.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		expect("Service back", "beta", "shop/tmp", tmp, alpha, gamma)
		if err := hub.Delete(ctx, sel); err != nil {
			t.Fatal(err)
		}
		expect("GlobalService deleted", "beta", "shop/tmp", nil, alpha, gamma)
		if err := tmp.delete(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("agent kill -9 and restart", func(t *testing.T) {
		s.StopAgent("beta", syscall.SIGKILL)
		waitCondition(t, ctx, hub, "beta", v1.ConditionConnected, metav1.ConditionFalse)
		// Static stability: the other agents keep the dead cluster's endpoints.
		expect("kept while beta's agent is down", "beta", "shop/cart", cart, alpha, gamma)
		// Changes while the agent is down: a new endpoint, and a Service gone.
		cart.endpoints = append(cart.endpoints, ready(addr(5), b2))
		if err := cart.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		if err := s.StartAgent(ctx, "beta"); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, ctx, hub, "beta", v1.ConditionConnected, metav1.ConditionTrue)
		expect("republished after restart", "beta", "shop/cart", cart, alpha, gamma)
		expectExactly(t, ctx, []*sandbox.Cluster{alpha, gamma}, "beta", "shop/cart")
	})

	t.Run("hub kill -9 and restart", func(t *testing.T) {
		s.StopHub(syscall.SIGKILL)
		// With the hub down, agents keep serving their last view.
		expect("kept while the hub is down", "beta", "shop/cart", cart, alpha, gamma)
		cart.endpoints = cart.endpoints[:len(cart.endpoints)-1]
		if err := cart.apply(ctx, betaKube); err != nil {
			t.Fatal(err)
		}
		if err := s.StartHub(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitConnected(ctx, waitLong); err != nil {
			t.Fatal(err)
		}
		expect("change made while the hub was down", "beta", "shop/cart", cart, alpha, gamma)
		expect("MCS export intact", "gamma", "shop/inventory", inventory, alpha, beta)
		expectExactly(t, ctx, []*sandbox.Cluster{alpha, beta, gamma}, "beta", "shop/cart")
		expectExactly(t, ctx, []*sandbox.Cluster{alpha, beta}, "gamma", "shop/inventory")
	})

	t.Run("unregister removes exactly the cluster's data", func(t *testing.T) {
		// Unregistering deletes the agent's namespace, RBAC included, and in a real
		// cluster the agent's pod with it: the sandbox's process stops first, so that
		// it is not left running without its RBAC (which downAfter would report).
		s.StopAgent("gamma", syscall.SIGTERM)
		err := register.Unregister(ctx, register.UnregisterOptions{Cluster: "gamma", Hub: s.HubConfig(),
			Member: gamma.Config(), Progress: testWriter{t}})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, waitLong, "gamma gone from alpha's and beta's views", func() error {
			for _, o := range []*sandbox.Cluster{alpha, beta} {
				v, err := agentView(ctx, o.DebugAddr)
				if err != nil {
					return err
				}
				for _, c := range v.Clusters {
					if c.Name == "gamma" {
						return fmt.Errorf("%s still sees gamma", o.Name)
					}
				}
			}
			return nil
		})

		expect("beta's data intact", "beta", "shop/cart", cart, alpha)
		if err := hub.Get(ctx, client.ObjectKey{Name: "gamma"}, &v1.MeshCluster{}); err == nil {
			t.Error("MeshCluster gamma still exists")
		}
	})
}

// expectExactly checks that each observer sees cluster publish exactly the services
// the test made there with key among them: nothing else, nothing twice.
func expectExactly(t *testing.T, ctx context.Context, observers []*sandbox.Cluster, cluster string, keys ...string) {
	t.Helper()
	for _, o := range observers {
		v, err := agentView(ctx, o.DebugAddr)
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for key, rec := range published(v, cluster) {
			have = append(have, key)
			seen := map[string]bool{}
			for _, e := range rec.Endpoints {
				if seen[e.Address] {
					t.Errorf("%s sees %s/%s with %s twice", o.Name, cluster, key, e.Address)
				}
				seen[e.Address] = true
			}
		}
		slices.Sort(have)
		if !slices.Equal(have, keys) {
			t.Errorf("%s sees %s publishing %v, want %v", o.Name, cluster, have, keys)
		}
	}
}

func waitCondition(t *testing.T, ctx context.Context, hub client.Client, cluster, typ string, status metav1.ConditionStatus) {
	t.Helper()
	testutil.Eventually(t, waitLong, fmt.Sprintf("%s %s=%s", cluster, typ, status), func() error {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: cluster}, mc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, typ)
		if c == nil || c.Status != status {
			return errors.New("condition is " + fmt.Sprint(c))
		}
		return nil
	})

}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
