package e2e

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// proxyless dials a global service through a cluster's agent as a proxyless gRPC
// client in the given zone.
func proxyless(t *testing.T, c *sandbox.Cluster, zone, target string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": %s, "server_features": ["xds_v3"]}],
  "node": {"id": "e2e-client-%s", "locality": {"region": %q, "zone": %q}}
}`, c.XDSAddr, c.XDSChannelCreds(), zone, c.Region, zone)
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// send makes n calls and counts where they landed ("cluster/zone") and how many failed.
func send(ctx context.Context, conn *grpc.ClientConn, n int) (map[string]int, int) {
	landed, failed := map[string]int{}, 0
	for range n {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := meshecho.Call(ctx, conn)
		cancel()
		if err != nil {
			failed++
			continue
		}
		landed[id]++
	}
	return landed, failed
}

// landsOn waits until 20 calls in a row all land on want.
func landsOn(t *testing.T, ctx context.Context, conn *grpc.ClientConn, want string) {
	t.Helper()
	testutil.Eventually(t, waitLong, "every request lands on "+want, func() error {
		landed, failed := send(ctx, conn, 20)
		if landed[want] != 20 {
			if failed > 0 {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := meshecho.Call(cctx, conn)
				return fmt.Errorf("landed %v, %d failed (a call now: %v)", landed, failed, err)
			}
			return fmt.Errorf("landed %v, %d failed", landed, failed)
		}
		return nil
	})

}

// TestLocalityRouting is issue 4's acceptance: proxyless gRPC clients in cluster alpha,
// served by alpha's agent, follow zone → cluster → failover target priorities as
// endpoints become not ready, split by a distribute policy, and demote then drop a
// cluster whose agent stopped.
func TestLocalityRouting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		HeartbeatTTL: 4 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)

	// Two echo backends per zone, each answering with "cluster/zone".
	backends := startZonalCart(t, ctx, s, 2)
	setReady := backends.setReady

	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	policy := &v1.FailoverPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1.FailoverPolicySpec{
			Failover:     []v1.FailoverRule{{From: v1.LocalitySelector{Cluster: "alpha"}, To: []v1.LocalitySelector{{Cluster: "gamma"}}}},
			FailbackHold: &metav1.Duration{},
			StaleCluster: v1.StaleClusterPolicy{DemoteAfter: &metav1.Duration{Duration: 2 * time.Second},
				DropAfter: &metav1.Duration{Duration: 15 * time.Second}},
		},
	}
	cart := &v1.GlobalService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}},
			FailoverPolicyRef: &v1.LocalObjectReference{Name: "cart"}},
	}
	for _, o := range []client.Object{policy, cart} {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	alpha := s.Cluster("alpha")
	a1, a2 := alpha.Zones[0], alpha.Zones[1]
	conn := proxyless(t, alpha, a1, "cart.shop.svc.clusterset.local:8080")

	t.Run("same zone first", func(t *testing.T) {
		landsOn(t, ctx, conn, "alpha/"+a1)
	})
	t.Run("zone failover", func(t *testing.T) {
		setReady("alpha", a1, false)
		landsOn(t, ctx, conn, "alpha/"+a2)
	})
	t.Run("cluster failover to the policy's target, not the rest of the region", func(t *testing.T) {
		setReady("alpha", "", false)
		testutil.Eventually(t, waitLong, "requests land on gamma only", func() error {
			landed, failed := send(ctx, conn, 40)
			if failed > 0 || landed["gamma/"+s.Cluster("gamma").Zones[0]]+landed["gamma/"+s.Cluster("gamma").Zones[1]] != 40 {
				return fmt.Errorf("landed %v, %d failed", landed, failed)
			}
			return nil
		})

	})
	t.Run("failback", func(t *testing.T) {
		setReady("alpha", "", true)
		landsOn(t, ctx, conn, "alpha/"+a1)
	})

	t.Run("failover explain and dev client", func(t *testing.T) {
		out, err := exec.Command(meshfedctlBin(), "failover", "explain", "--service", "shop/cart", "--cluster", "alpha",
			"--zone", a1, "--dir", s.Dir).CombinedOutput()
		if err != nil {
			t.Fatalf("failover explain: %v\n%s", err, out)
		}
		t.Logf("meshfedctl failover explain:\n%s", out)
		for _, want := range []string{"same zone", "failover target 1: cluster gamma", "alpha", "beta", "gamma"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("explain output lacks %q", want)
			}
		}
		out, err = exec.Command(meshfedctlBin(), "dev", "client", "--dir", s.Dir, "--cluster", "alpha", "--zone", a1,
			"--target", "cart.shop.svc.clusterset.local:8080", "-n", "20").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "alpha/"+a1+"  20") {
			t.Errorf("dev client: %v\n%s", err, out)
		}
	})

	t.Run("distribute within 5% of its weights", func(t *testing.T) {
		split := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "split"},
			Spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{{From: "us-east/*", To: []v1.WeightedLocality{
				{Locality: v1.LocalityPattern("us-east/" + a1), Weight: 60}, {Locality: "eu-west", Weight: 40},
			}}}}}
		if err := hub.Create(ctx, split); err != nil {
			t.Fatal(err)
		}
		g := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "split"},
			Spec: v1.GlobalServiceSpec{Service: &v1.ServiceReference{Name: "cart"}, Hostname: "split.shop.global",
				Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080}}, FailoverPolicyRef: &v1.LocalObjectReference{Name: "split"}}}
		if err := hub.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		splitConn := proxyless(t, alpha, a1, "split.shop.global:8080")
		testutil.Eventually(t, waitLong, "traffic split 60/40", func() error {
			landed, failed := send(ctx, splitConn, 2000)
			east := landed["alpha/"+a1]
			west := landed["gamma/"+s.Cluster("gamma").Zones[0]] + landed["gamma/"+s.Cluster("gamma").Zones[1]]
			if failed > 0 || east+west != 2000 || math.Abs(float64(east)/2000-0.6) > 0.05 {
				return fmt.Errorf("landed %v, %d failed", landed, failed)
			}
			t.Logf("2000 requests: %d to alpha/%s (want 60%%), %d to eu-west (want 40%%)", east, a1, west)
			return nil
		})

	})

	t.Run("stale cluster demoted, then dropped", func(t *testing.T) {
		setReady("alpha", "", false)
		gamma := s.Cluster("gamma")
		testutil.Eventually(t, waitLong, "requests land on gamma", func() error {
			landed, _ := send(ctx, conn, 20)
			if landed["gamma/"+gamma.Zones[0]]+landed["gamma/"+gamma.Zones[1]] != 20 {
				return fmt.Errorf("landed %v", landed)
			}
			return nil
		})

		s.StopAgent("gamma", syscall.SIGKILL) // its endpoints keep serving; its heartbeat lapses
		landsOnAny(t, ctx, conn, "beta/"+s.Cluster("beta").Zones[0], "beta/"+s.Cluster("beta").Zones[1])
		setReady("beta", "", false)
		landsOnAny(t, ctx, conn, "gamma/"+gamma.Zones[0], "gamma/"+gamma.Zones[1]) // stale, but all that is left
		testutil.Eventually(t, waitLong, "gamma dropped after dropAfter: nothing left to route to", func() error {
			landed, failed := send(ctx, conn, 5)
			if failed != 5 {
				return fmt.Errorf("landed %v", landed)
			}
			return nil
		})

	})
}

// landsOnAny waits until 20 calls in a row land on the given backends only.
func landsOnAny(t *testing.T, ctx context.Context, conn *grpc.ClientConn, want ...string) {
	t.Helper()
	testutil.Eventually(t, waitLong, fmt.Sprintf("every request lands on %v", want), func() error {
		landed, failed := send(ctx, conn, 20)
		n := 0
		for _, w := range want {
			n += landed[w]
		}
		if n != 20 {
			return fmt.Errorf("landed %v, %d failed", landed, failed)
		}
		return nil
	})

}
