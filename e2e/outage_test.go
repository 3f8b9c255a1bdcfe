package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestServeThroughHubOutage: with traffic flowing in two clusters, the hub is killed
// and stays down for longer than the policy's dropAfter. Meanwhile a readiness change
// in beta reaches beta's own clients, alpha's agent is restarted and serves the view
// it saved (its clients, old and new, keep working), and beta's clients fail over to
// alpha, which is neither demoted nor dropped: this agent's outage says nothing about
// alpha. Then the hub comes back and no cluster is demoted. No call fails.
func TestServeThroughHubOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: meshfedBin(),
		HeartbeatTTL: 4 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)
	alpha, beta := s.Cluster("alpha"), s.Cluster("beta")

	// One echo backend per zone, each answering with "cluster/zone".
	backends := startZonalCart(t, ctx, s, 1)
	setReady := backends.setReady

	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	const demote, drop = 3 * time.Second, 10 * time.Second
	policy := &v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1.FailoverPolicySpec{FailbackHold: &metav1.Duration{},
			StaleCluster: v1.StaleClusterPolicy{DemoteAfter: &metav1.Duration{Duration: demote}, DropAfter: &metav1.Duration{Duration: drop}}}}
	cart := &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}},
			FailoverPolicyRef: &v1.LocalObjectReference{Name: "cart"}}}
	for _, o := range []client.Object{policy, cart} {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	const target = "cart.shop.svc.clusterset.local:8080"
	a1, a2, b1, b2 := alpha.Zones[0], alpha.Zones[1], beta.Zones[0], beta.Zones[1]
	alphaConn, betaConn := proxyless(t, alpha, a1, target), proxyless(t, beta, b1, target)
	landsOn(t, ctx, alphaConn, "alpha/"+a1)
	landsOn(t, ctx, betaConn, "beta/"+b1)
	alphaTraffic, betaTraffic := startTraffic(t, "alpha/"+a1, alphaConn), startTraffic(t, "beta/"+b1, betaConn)
	phase := func(name string) {
		t.Logf("== %s", name)
		alphaTraffic.Phase(name)
		betaTraffic.Phase(name)
	}
	t.Cleanup(func() {
		var b strings.Builder
		alphaTraffic.Print(&b)
		betaTraffic.Print(&b)
		t.Logf("traffic per phase:\n%s", b.String())
	})

	// alpha's agent saves its view in alpha for a restart during an outage.
	configured := time.Now()
	alphaKube := kubernetes.NewForConfigOrDie(alpha.Config())
	testutil.Eventually(t, waitLong, "alpha's agent to save its view with the global service", func() error {
		cm, err := alphaKube.CoreV1().ConfigMaps("meshfed-system").Get(ctx, clusteragent.SnapshotConfigMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		saved, err := time.Parse(time.RFC3339Nano, cm.Data["savedAt"])
		if err != nil || saved.Before(configured) {
			return fmt.Errorf("snapshot saved at %q, before the global service", cm.Data["savedAt"])
		}
		return nil
	})

	phase("hub killed")
	killed := time.Now()
	s.StopHub(syscall.SIGKILL)
	for _, c := range s.Clusters {
		testutil.Eventually(t, waitLong, c.Name+"'s agent to notice the hub is gone", func() error {
			v, err := agentView(ctx, c.DebugAddr)
			if err != nil {
				return err
			}
			if v.HubReachable {
				return errors.New("hub still reachable")
			}
			return nil
		})
	}

	phase("beta/" + b1 + " not ready (local change, hub down)")
	setReady("beta", b1, false)
	landsOn(t, ctx, betaConn, "beta/"+b2)

	phase("alpha's agent restarted (hub down)")
	s.StopAgent("alpha", syscall.SIGKILL)
	if err := s.StartAgent(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	v, err := agentView(ctx, alpha.DebugAddr)
	if err != nil {
		t.Fatal(err)
	}
	if v.Source != "restored" || len(v.GlobalServices) != 1 {
		t.Fatalf("alpha's restarted agent serves a %q view with %d global services, want the restored one with 1", v.Source, len(v.GlobalServices))
	}
	t.Logf("alpha's agent restored a view saved at %v (%d keys)", v.Restored.SavedAt, v.Restored.Keys)
	// A client that connects now gets the listener, and alpha's own change reaches it.
	newConn := proxyless(t, alpha, a2, target)
	landsOn(t, ctx, newConn, "alpha/"+a2)
	setReady("alpha", a1, false)
	landsOn(t, ctx, alphaConn, "alpha/"+a2)
	setReady("alpha", a1, true)
	landsOn(t, ctx, alphaConn, "alpha/"+a1)

	phase("outage longer than dropAfter; beta's copies all gone")
	testutil.Eventually(t, waitLong, "the outage to outlast dropAfter", func() error {
		if d := time.Since(killed); d < drop+2*time.Second {
			return fmt.Errorf("down for %v", d.Round(time.Second))
		}
		return nil
	})
	setReady("beta", "", false)
	testutil.Eventually(t, waitLong, "beta's clients to fail over to alpha, neither demoted nor dropped", func() error {
		landed, failed := send(ctx, betaConn, 20)
		if landed["alpha/"+a1]+landed["alpha/"+a2] != 20 {
			return fmt.Errorf("landed %v, %d failed", landed, failed)
		}
		return nil
	})
	if out := explain(t, ctx, beta, b1); strings.Contains(out, "stale") || strings.Contains(out, "dropped") {
		t.Fatalf("during the outage beta's agent judges alpha by its silence:\n%s", out)
	}

	phase("hub back")
	if err := s.StartHub(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitLong, "alpha's agent to serve the hub's view again", func() error {
		v, err := agentView(ctx, alpha.DebugAddr)
		if err != nil {
			return err
		}
		if v.Source != "live" || !v.HubReachable {
			return fmt.Errorf("source %q, hub reachable %v", v.Source, v.HubReachable)
		}
		return nil
	})
	// For longer than demoteAfter after the hub's return, no agent demotes anyone.
	for end := time.Now().Add(2 * demote); time.Now().Before(end); {
		for _, c := range []*sandbox.Cluster{alpha, beta} {
			if out := explain(t, ctx, c, c.Zones[0]); strings.Contains(out, "stale") || strings.Contains(out, "dropped") {
				t.Fatalf("after the hub's restart %s's agent demoted a healthy cluster:\n%s", c.Name, out)
			}
		}
		time.Sleep(250 * time.Millisecond) // a bounded watch over a window, not a wait for a result
	}

	phase("beta ready again")
	setReady("beta", "", true)
	landsOn(t, ctx, betaConn, "beta/"+b1)
	for _, tr := range []*traffic{alphaTraffic, betaTraffic} {
		if n, last := tr.Failed(); n > 0 {
			t.Errorf("%s: %d calls failed (last: %s)", tr.name, n, last)
		}
	}
}

// explain returns the agent's failover explanation of shop/cart for a client in zone.
func explain(t *testing.T, ctx context.Context, c *sandbox.Cluster, zone string) string {
	t.Helper()
	u := "http://" + c.DebugAddr + "/debug/explain?service=shop/cart&zone=" + url.QueryEscape(zone)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}
