package xds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

const testTrustDomain = "meshfed.local"

// issue writes a workload certificate for spiffeID from ca, its key and ca's
// certificate into a new directory, as an agent's --workload-cert-dir does, and
// returns the directory.
func issue(t *testing.T, ca *pki.CA, spiffeID string) string {
	t.Helper()
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.ServerTemplate("workload")
	tmpl.URIs = []*url.URL{u}
	certPEM, keyPEM, err := ca.Issue(tmpl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// endpointsAt is a record of namespace shop with one ready endpoint per address
// (host:port), running as accounts.
func endpointsAt(name string, accounts []string, addrs ...string) *model.ServiceEndpoints {
	rec := &model.ServiceEndpoints{Namespace: "shop", Name: name, Ports: []model.ServicePort{{Name: "grpc", Port: 8080}},
		ServiceAccounts: accounts}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		rec.Endpoints = append(rec.Endpoints, model.Endpoint{Address: host, Zone: "z", Ready: true, Serving: true,
			Ports: []model.EndpointPort{{Name: "grpc", Port: int32(p)}}})
	}
	return rec
}

func global(name string, clusters ...string) *model.GlobalService {
	return &model.GlobalService{Namespace: "shop", Name: name, Hostname: name + ".shop.global",
		Service: &model.ServiceRef{Namespace: "shop", Name: name}, Clusters: clusters,
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}}
}

// startMTLSServer runs cluster's xDS server with mTLS on v until the test ends.
func startMTLSServer(t *testing.T, v *view.View, cluster string) *xds.Server {
	t.Helper()
	s, err := xds.New(xds.Options{Cluster: cluster, View: v, Addr: "127.0.0.1:0", MTLS: true, TrustDomain: testTrustDomain,
		Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "xds server "+cluster, s.Run)
	testutil.Eventually(t, 10*time.Second, "the xDS server to listen", func() error {
		if s.Addr() == "" {
			return errors.New("no address yet")
		}
		return nil
	})
	return s
}

// meshConn dials hostname:8080 as a proxyless gRPC client of server with xDS
// credentials and the workload certificate in certDir.
func meshConn(t *testing.T, server, hostname, certDir string) *grpc.ClientConn {
	t.Helper()
	p := echo.Proxy{XDSServer: server, NodeID: "client-" + hostname, Region: "r", Zone: "z", CertDir: certDir}
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(p.Bootstrap())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+hostname+":8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serveXDS runs an echo backend on lis as a proxyless gRPC xDS server of server,
// with the workload certificate in certDir, until the test ends.
func serveXDS(t *testing.T, lis net.Listener, id, server, certDir string) {
	t.Helper()
	s, err := echo.ServeXDS(lis, id, echo.Proxy{XDSServer: server, NodeID: "server-" + id, Region: "r", Zone: "z", CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
}

// eventuallyServed waits until a call through conn is answered by want, and returns
// the client identity the server saw.
func eventuallyServed(t *testing.T, conn *grpc.ClientConn, want string) string {
	t.Helper()
	var client string
	testutil.Eventually(t, 30*time.Second, "a call answered by "+want, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server, c, err := echo.CallPeer(ctx, conn)
		if err != nil || server != want {
			return fmt.Errorf("answered by %q, err %v", server, err)
		}
		client = c
		return nil
	})
	return client
}

// eventuallyRefused waits until a call through conn fails because the server's
// certificate holds no identity allowed to serve, and checks that it keeps failing.
func eventuallyRefused(t *testing.T, conn *grpc.ClientConn, identity string) {
	t.Helper()
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server, _, err := echo.CallPeer(ctx, conn)
		switch {
		case err == nil:
			return fmt.Errorf("answered by %q: a server holding %s was accepted", server, identity)
		case !strings.Contains(err.Error(), "do not match any of the accepted SANs") || !strings.Contains(err.Error(), identity):
			return fmt.Errorf("failed, but not on the SAN matcher: %v", err)
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, "the handshake refused for the server's identity "+identity, call)
	for range 5 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServingIdentities: a proxyless gRPC client accepts as a global service's server
// only a certificate naming one of the accounts its authorized clusters publish for
// it, and proxyless gRPC servers get from their agent a Listener that requires a
// client certificate from the mesh. Every part is real: two agents' xDS servers,
// grpc-go xDS clients and servers (xDS credentials, file_watcher certificates), one
// mesh root.
//
//   - shop/cart: alpha's backend runs as cart, the account alpha publishes: served,
//     and the backend sees the client's SPIFFE ID.
//   - shop/orders: alpha publishes the account orders, its backend holds alpha's
//     (legitimate) cart identity: refused on the SAN matcher alone.
//   - shop/ledger, authorized for alpha only: alpha's record points at beta's ledger
//     backend, a legitimate beta workload; beta publishes ledger too but is not
//     authorized: refused on the SAN matcher alone. Once the global service
//     authorizes beta, the same backend is served: only the matcher stopped it.
//   - A client without a certificate, or with one from another root, is refused by
//     the backend (DownstreamTlsContext: require_client_certificate).
func TestServingIdentities(t *testing.T) {
	root, err := pki.NewCA("test mesh root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id := func(cluster, sa string) string { return trust.ServiceAccountID(testTrustDomain, cluster, "shop", sa) }
	cartLis, ordersLis, ledgerLis := listen(t), listen(t), listen(t)
	cart, orders, ledger := cartLis.Addr().String(), ordersLis.Addr().String(), ledgerLis.Addr().String()

	v := view.New(view.Options{})
	for _, c := range []string{"alpha", "beta"} {
		v.OnUpsert(keyspace.ClusterInfo(c), &model.ClusterInfo{Name: c, Region: "r", Zones: []string{"z"}, Network: "default",
			AddressRanges: []string{"127.0.0.0/8"}}) // the backends listen on loopback
		v.OnUpsert(keyspace.ClusterHeartbeat(c), &model.Heartbeat{Time: time.Now(), TTL: 15, Agent: c})
	}
	v.OnUpsert(keyspace.ServiceEndpoints("alpha", "shop", "cart"), endpointsAt("cart", []string{"cart"}, cart))
	v.OnUpsert(keyspace.ServiceEndpoints("alpha", "shop", "orders"), endpointsAt("orders", []string{"orders"}, orders))
	v.OnUpsert(keyspace.ServiceEndpoints("alpha", "shop", "ledger"), endpointsAt("ledger", []string{"ledger"}, ledger))
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "ledger"), endpointsAt("ledger", []string{"ledger"}, ledger))
	for _, g := range []*model.GlobalService{global("cart"), global("orders"), global("ledger", "alpha")} {
		v.OnUpsert(keyspace.GlobalService("shop", g.Name), g)
	}
	v.OnSynced()
	alpha, beta := startMTLSServer(t, v, "alpha"), startMTLSServer(t, v, "beta")

	serveXDS(t, cartLis, "alpha-cart", alpha.Addr(), issue(t, root, id("alpha", "cart")))
	serveXDS(t, ordersLis, "alpha-orders", alpha.Addr(), issue(t, root, id("alpha", "cart")))
	serveXDS(t, ledgerLis, "beta-ledger", beta.Addr(), issue(t, root, id("beta", "ledger")))
	clientDir := issue(t, root, id("alpha", "frontend"))

	t.Run("served by an allowed identity", func(t *testing.T) {
		conn := meshConn(t, alpha.Addr(), "cart.shop.global", clientDir)
		if got := eventuallyServed(t, conn, "alpha-cart"); got != id("alpha", "frontend") {
			t.Errorf("the backend saw the client as %q, want %q", got, id("alpha", "frontend"))
		}
	})
	t.Run("refused: an identity of another service account", func(t *testing.T) {
		eventuallyRefused(t, meshConn(t, alpha.Addr(), "orders.shop.global", clientDir), id("alpha", "cart"))
	})
	t.Run("refused: a cluster not authorized to provide the service", func(t *testing.T) {
		conn := meshConn(t, alpha.Addr(), "ledger.shop.global", clientDir)
		eventuallyRefused(t, conn, id("beta", "ledger"))
		v.OnUpsert(keyspace.GlobalService("shop", "ledger"), global("ledger", "alpha", "beta"))
		eventuallyServed(t, conn, "beta-ledger")
	})
	t.Run("refused: clients without a certificate from the mesh", func(t *testing.T) {
		// The backend serves mTLS once it has its Listener: the allowed client above
		// was served, so it has.
		other, err := pki.NewCA("another root", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		load := func(dir string) tls.Certificate {
			cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			return cert
		}
		roots := x509.NewCertPool()
		roots.AddCert(root.Cert)
		for name, certs := range map[string][]tls.Certificate{
			"no": nil, "another root's": {load(issue(t, other, id("alpha", "frontend")))}, "the mesh's": {load(clientDir)},
		} {
			creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, ServerName: "workload",
				// The server's certificate names a SPIFFE ID, not a host: check the chain only.
				InsecureSkipVerify: true, VerifyPeerCertificate: verifyChain(roots)})
			conn, err := grpc.NewClient(cart, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			server, err := echo.Call(ctx, conn)
			cancel()
			conn.Close()
			switch {
			case name == "the mesh's" && err != nil:
				t.Errorf("a client with the mesh's certificate was refused: %v", err)
			case name != "the mesh's" && err == nil:
				t.Errorf("a client with %s certificate was answered by %q", name, server)
			}
		}
	})
}

// verifyChain checks a peer's chain against roots, without names.
func verifyChain(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		var certs []*x509.Certificate
		for _, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return errors.New("no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
}
