package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// The attack suite (issue 10): each attack runs with a real member's stolen
// credentials or keys against one shared federation, and asserts what the other
// clusters' traffic and the hub's status show. An attack registers itself from its
// own file with addAttack; TestAttacks runs them in name order, each as a subtest
// (go test ./e2e -run 'TestAttacks/<name>' runs one).

// attack is one attack of the suite.
type attack struct {
	name string
	run  func(t *testing.T, w *attackWorld)
}

var attacks []attack

// addAttack registers an attack; call it from an init function.
func addAttack(name string, run func(t *testing.T, w *attackWorld)) {
	attacks = append(attacks, attack{name, run})
}

// attackWorld is the federation every attack runs against: three member clusters
// (the last on a network of its own, behind its east-west gateway), the mesh CA
// (its intermediates and workload certificates), and zonal cart backends in every cluster behind the GlobalService shop/cart
// (port grpc 8080, every cluster, the default policy). The agents serve mTLS: the
// backends are proxyless xDS servers presenting their cluster's shop/cart identity,
// and clients need xDS credentials and a mesh certificate (w.client).
type attackWorld struct {
	ctx  context.Context
	s    *sandbox.Sandbox
	hub  client.Client
	cart *zonalCart
}

func TestAttacks(t *testing.T) {
	if len(attacks) == 0 {
		t.Skip("no attacks registered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		MeshCA: true, MTLS: true, SeparateNetwork: true, HeartbeatTTL: 4 * time.Second,
		WorkloadIdentities: []string{"shop/cart", "shop/client"}, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	w := &attackWorld{ctx: ctx, s: s, hub: hubClient(t, s)}
	w.cart = startZonalCartWith(t, ctx, s, 1, true)
	if err := w.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	cart := &v1.GlobalService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec:       v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}},
	}
	if err := w.hub.Create(ctx, cart); err != nil {
		t.Fatal(err)
	}
	// Settled: every zone's backend is an xDS server of its agent, in its zone's
	// group, before any attack counts groups or calls.
	for _, c := range s.Clusters {
		testutil.Eventually(t, waitLong, c.Name+"'s backends connected to its agent", func() error {
			if g := scrape(t, ctx, c.MetricsAddr, "meshfed_xds_groups"); int(g) < len(c.Zones) {
				return fmt.Errorf("%v groups, want one per zone (%d)", g, len(c.Zones))
			}
			return nil
		})
	}

	sorted := slices.Clone(attacks)
	slices.SortFunc(sorted, func(a, b attack) int { return strings.Compare(a.name, b.name) })
	for _, a := range sorted {
		t.Run(a.name, func(t *testing.T) { a.run(t, w) })
	}
}

// stolenEtcd is an etcd client with cluster's agent credentials, as an attacker
// who took them from the member cluster's Secret would hold them.
func (w *attackWorld) stolenEtcd(t *testing.T, cluster string) *clientv3.Client {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(w.s.Cluster(cluster).Config())
	creds, err := agentcreds.Load(w.ctx, kube, hubinfo.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	c, err := etcdconn.New(w.ctx, creds.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
