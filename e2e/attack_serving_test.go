package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/trust"
)

// The serving attacks (issue 10, item 2): a member's legitimate workload, holding a
// real certificate from its cluster's intermediate, tries to serve what it may not.
// Clients accept as a global service's server only the identities of the accounts
// that the clusters authorized to provide it publish for it, so each attempt fails
// the TLS handshake, and nothing but that SAN matcher stops it: once authorized, the
// very same backend is served.
func init() {
	addAttack("serving: a beta workload cannot serve a service beta is not authorized to provide", func(t *testing.T, w *attackWorld) {
		alpha := w.s.Cluster("alpha")
		// Baseline: alpha's clients reach cart over mTLS, every backend a proxyless
		// xDS server whose Listener requires the client's mesh certificate.
		w.servedBy(t, w.client(t, "alpha", "cart.shop.svc.clusterset.local:8080"), "alpha/"+alpha.Zones[0])

		// ledger may be provided by alpha and gamma only. The address alpha publishes
		// for it is where beta's cart workload answers (a hijacked address), with
		// beta's real shop/cart certificate; beta declares ledger there too, running
		// as cart. What stops alpha's client is that beta's identity is not among
		// ledger's.
		victim := w.cart.services["beta"].endpoints[0]
		w.publish(t, "beta", "ledger", victim.addr, "cart")
		w.publish(t, "alpha", "ledger", victim.addr, "ledger")
		w.globalService(t, "ledger", "alpha", "gamma")

		conn := w.client(t, "alpha", "ledger.shop.svc.clusterset.local:8080")
		w.refused(t, conn, trust.ServiceAccountID(v1.DefaultTrustDomain, "beta", "shop", "cart"))
		// cart's traffic is where it was.
		w.servedBy(t, w.client(t, "alpha", "cart.shop.svc.clusterset.local:8080"), "alpha/"+alpha.Zones[0])

		// Control: authorize beta, and the same workload is accepted.
		w.globalService(t, "ledger", "alpha", "beta", "gamma")
		w.servedBy(t, conn, "beta/"+victim.zone)
	})

	addAttack("serving: a backend presenting the identity of another service account is refused", func(t *testing.T, w *attackWorld) {
		alpha := w.s.Cluster("alpha")
		// orders runs as alpha's shop/orders; the backend at its address holds
		// alpha's (legitimate) shop/cart certificate.
		host := testnet.New(t, 1)
		addr := net.JoinHostPort(host.Addr(0).String(), "8080")
		w.startXDSEcho(t, host, alpha, addr, "alpha-cart-workload", "shop/cart")
		w.publish(t, "alpha", "orders", host.Addr(0).String(), "orders")
		w.globalService(t, "orders")

		conn := w.client(t, "alpha", "orders.shop.svc.clusterset.local:8080")
		w.refused(t, conn, trust.ServiceAccountID(v1.DefaultTrustDomain, "alpha", "shop", "cart"))

		// Control: once orders' endpoints are said to run as cart too, it is served.
		w.publish(t, "alpha", "orders", host.Addr(0).String(), "orders", "cart")
		w.servedBy(t, conn, "alpha-cart-workload")
	})
}

// client dials target from cluster's first zone as a proxyless gRPC client with xDS
// credentials and the cluster's shop/client workload certificate.
func (w *attackWorld) client(t *testing.T, cluster, target string) *grpc.ClientConn {
	t.Helper()
	c := w.s.Cluster(cluster)
	return meshClient(t, c, c.Zones[0], target, waitCertDir(t, c, "shop/client"))
}

// startXDSEcho runs an echo backend answering id on addr (an address of host) as a
// proxyless gRPC xDS server of cluster c's agent, with c's workload certificate of
// identity ("<ns>/<sa>").
func (w *attackWorld) startXDSEcho(t *testing.T, host *testnet.Host, c *sandbox.Cluster, addr, id, identity string) {
	t.Helper()
	spec := xdsEchoSpec(addr, id, forwardFrom(t, host, c.XDSAddr), c.Region, c.Zones[0], waitCertDir(t, c, identity))
	host.Start(t, "xds-echo-"+id, []string{meshfedTestBinary(t)}, grpcEchoEnv+"="+spec)
}

// publish makes cluster's Service shop/<name> one endpoint at addr (port grpc 8080)
// in the cluster's first zone, running as accounts.
func (w *attackWorld) publish(t *testing.T, cluster, name, addr string, accounts ...string) {
	t.Helper()
	c := w.s.Cluster(cluster)
	svc := &service{namespace: "shop", name: name, port: 8080, endpoints: []endpoint{ready(addr, c.Zones[0])}, accounts: accounts}
	if err := svc.apply(w.ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
		t.Fatal(err)
	}
}

// globalService creates or updates the GlobalService shop/<name> (port grpc 8080)
// provided by clusters (all if none).
func (w *attackWorld) globalService(t *testing.T, name string, clusters ...string) {
	t.Helper()
	g := &v1.GlobalService{}
	err := w.hub.Get(w.ctx, client.ObjectKey{Namespace: "shop", Name: name}, g)
	if err != nil {
		g = &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}}}
	}
	g.Spec.Clusters = nil
	for _, c := range clusters {
		g.Spec.Clusters = append(g.Spec.Clusters, v1.ClusterName(c))
	}
	if err != nil {
		err = w.hub.Create(w.ctx, g)
	} else {
		err = w.hub.Update(w.ctx, g)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// servedBy waits until every one of 5 calls through conn is answered by want, and the
// backend saw the client's mesh identity.
func (w *attackWorld) servedBy(t *testing.T, conn *grpc.ClientConn, want string) {
	t.Helper()
	testutil.Eventually(t, 2*time.Minute, "calls answered by "+want, func() error {
		for range 5 {
			ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
			server, peer, err := meshecho.CallPeer(ctx, conn)
			cancel()
			if err != nil {
				return err
			}
			if server != want || !strings.HasPrefix(peer, "spiffe://") || !strings.HasSuffix(peer, "/ns/shop/sa/client") {
				return fmt.Errorf("answered by %q, which saw the client as %q", server, peer)
			}
		}
		return nil
	})
}

// refused waits until calls through conn fail on the client's SAN matcher, the
// server presenting identity, and checks that they keep failing.
func (w *attackWorld) refused(t *testing.T, conn *grpc.ClientConn, identity string) {
	t.Helper()
	call := func() error {
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		defer cancel()
		server, _, err := meshecho.CallPeer(ctx, conn)
		switch {
		case err == nil:
			return fmt.Errorf("answered by %q: a server presenting %s was accepted", server, identity)
		case !strings.Contains(err.Error(), "do not match any of the accepted SANs") || !strings.Contains(err.Error(), identity):
			return fmt.Errorf("failed, but not (yet) on the SAN matcher for %s: %v", identity, err)
		}
		return nil
	}
	testutil.Eventually(t, 2*time.Minute, "the handshake refused for the server's identity "+identity, call)
	for range 5 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
}
