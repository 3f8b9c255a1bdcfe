package xds_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// meshCA is a mesh root and the intermediates of some clusters, made as the hub makes
// them (from the agent's CSR, its name constraints kept): each can sign only its
// cluster's SPIFFE IDs.
type meshCA struct {
	rootPEM       []byte
	intermediates map[string]*trust.Intermediate
}

func newMeshCA(t *testing.T, clusters ...string) *meshCA {
	t.Helper()
	now := time.Now()
	rootPEM, rootKeyPEM, err := trust.NewRoot(testTrustDomain, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.ParseCert(rootPEM)
	rootKey, _ := pki.ParseKey(rootKeyPEM)
	m := &meshCA{rootPEM: rootPEM, intermediates: map[string]*trust.Intermediate{}}
	for i, cluster := range clusters {
		csrPEM, keyPEM, err := trust.NewIntermediateCSR(testTrustDomain, cluster)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := pki.ParseCSR(csrPEM)
		var extra []pkix.Extension
		for _, e := range csr.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) { // name constraints
				extra = append(extra, e)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano() + int64(i)),
			Subject: csr.Subject, URIs: csr.URIs, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
			ExtraExtensions: extra}, root, csr.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		ic, err := trust.LoadIntermediate(append(pki.EncodeCert(der), rootPEM...), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		m.intermediates[cluster] = ic
	}
	return m
}

// workload issues the certificate of shop's service account sa in cluster and
// returns it as an agent's --workload-cert-dir holds it (the chain, the key, the
// root), and as a TLS certificate.
func (m *meshCA) workload(t *testing.T, cluster, sa string) (string, tls.Certificate) {
	t.Helper()
	chain, key, err := trust.IssueWorkload(m.intermediates[cluster], testTrustDomain, "shop", sa, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.crt": m.rootPEM, "tls.crt": chain, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return dir, pair
}

// caller is a real mTLS client of one backend with one identity, on one connection
// it counts the dials of: a drained connection (GOAWAY) would be dialed again.
type caller struct {
	name  string
	conn  *grpc.ClientConn
	dials atomic.Int32
}

func (m *meshCA) caller(t *testing.T, addr, cluster, sa string) *caller {
	t.Helper()
	_, cert := m.workload(t, cluster, sa)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.rootPEM)
	c := &caller{name: cluster + "/shop/" + sa}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots,
		// The server's certificate names a SPIFFE ID, not a host: check the chain only.
		InsecureSkipVerify: true, VerifyPeerCertificate: verifyChain(roots)})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.conn = conn
	return c
}

// call calls method (UnaryCall or EmptyCall of grpc.testing.TestService) and returns
// its status code.
func (c *caller) call(method string) codes.Code {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := testgrpc.NewTestServiceClient(c.conn)
	var err error
	if method == "EmptyCall" {
		_, err = client.EmptyCall(ctx, &testgrpc.Empty{})
	} else {
		_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	}
	return status.Code(err)
}

// expect waits until c's calls of method get want, then checks that they keep
// getting it.
func (c *caller) expect(t *testing.T, method string, want codes.Code) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s calling %s to get %v", c.name, method, want), func() error {
		if got := c.call(method); got != want {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	for range 3 {
		if got := c.call(method); got != want {
			t.Fatalf("%s calling %s: got %v after %v", c.name, method, got, want)
		}
	}
}

const testService = "/grpc.testing.TestService/"

// TestAuthorizationPolicyServed: the agent serves AuthorizationPolicies to a real
// proxyless gRPC xDS server (grpc-go, xDS credentials, the meshfed certificate
// provider) as the RBAC its listener enforces, and real mTLS clients with
// certificates from the intermediates of three clusters get what policy.Decide says:
//
//   - an Allow rule for shop/frontend of alpha and beta: beta's frontend (another
//     cluster than the server's) is served; beta's checkout, and gamma's frontend
//     (the same service account in a cluster the rule leaves out) get
//     PERMISSION_DENIED;
//   - a Deny rule for beta's callers of UnaryCall beats the Allow rule: beta's
//     frontend is denied UnaryCall, still served EmptyCall;
//   - a namespace default Deny: with no Allow policy nobody is served, then only
//     what an Allow rule allows.
//
// Each change reaches the backend as a route configuration update: it applies to the
// next call on the callers' existing connections, which are never dialed again (no
// drain, no GOAWAY).
func TestAuthorizationPolicyServed(t *testing.T) {
	mesh := newMeshCA(t, "alpha", "beta", "gamma")
	cartLis := listen(t)
	cart := cartLis.Addr().String()
	v := view.New(view.Options{})
	for _, c := range []string{"alpha", "beta", "gamma"} {
		v.OnUpsert(keyspace.ClusterInfo(c), &model.ClusterInfo{Name: c, Region: "r", Zones: []string{"z"}, Network: "default",
			AddressRanges: []string{"127.0.0.0/8"}})
		v.OnUpsert(keyspace.ClusterHeartbeat(c), &model.Heartbeat{Time: time.Now(), TTL: 15, Agent: c})
	}
	v.OnUpsert(keyspace.ServiceEndpoints("alpha", "shop", "cart"), endpointsAt("cart", []string{"cart"}, cart))
	v.OnUpsert(keyspace.GlobalService("shop", "cart"), global("cart"))
	put := func(p *model.AuthorizationPolicy) { v.OnUpsert(keyspace.AuthorizationPolicy(p.Namespace, p.Name), p) }
	remove := func(p *model.AuthorizationPolicy) { v.OnDelete(keyspace.AuthorizationPolicy(p.Namespace, p.Name)) }
	frontendOnly := &model.AuthorizationPolicy{Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"alpha", "beta"}, Namespaces: []string{"shop"},
			ServiceAccounts: []string{"frontend"}}}, Methods: []string{testService + "*"}}}}
	put(frontendOnly)
	v.OnSynced()
	agent := startMTLSServer(t, v, "alpha")
	dir, _ := mesh.workload(t, "alpha", "cart")
	serveXDS(t, cartLis, "alpha-cart", agent.Addr(), dir)

	frontend := mesh.caller(t, cart, "beta", "frontend")
	checkout := mesh.caller(t, cart, "beta", "checkout")
	gammaFrontend := mesh.caller(t, cart, "gamma", "frontend")
	alphaFrontend := mesh.caller(t, cart, "alpha", "frontend")
	callers := []*caller{frontend, checkout, gammaFrontend, alphaFrontend}

	t.Run("allowed identity from another cluster; other identities denied", func(t *testing.T) {
		frontend.expect(t, "UnaryCall", codes.OK)
		alphaFrontend.expect(t, "UnaryCall", codes.OK)
		checkout.expect(t, "UnaryCall", codes.PermissionDenied)
		gammaFrontend.expect(t, "EmptyCall", codes.PermissionDenied)
	})
	// Every caller has its connection now: from here on, no policy change may make
	// any of them dial again.
	dials := make([]int32, len(callers))
	for i, c := range callers {
		if dials[i] = c.dials.Load(); dials[i] == 0 {
			t.Fatalf("%s has not dialed: the test cannot see drains", c.name)
		}
	}

	noBeta := &model.AuthorizationPolicy{Namespace: "shop", Name: "no-beta-unary", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"beta"}}}, Methods: []string{testService + "UnaryCall"}}}}
	t.Run("a Deny rule beats an Allow rule, on the existing connection", func(t *testing.T) {
		start := time.Now()
		put(noBeta)
		frontend.expect(t, "UnaryCall", codes.PermissionDenied)
		t.Logf("the Deny rule applied at the backend %v after the view changed", time.Since(start))
		frontend.expect(t, "EmptyCall", codes.OK)
		alphaFrontend.expect(t, "UnaryCall", codes.OK)
		remove(noBeta)
		frontend.expect(t, "UnaryCall", codes.OK)
	})

	posture := &model.AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny}
	t.Run("namespace default Deny denies unless allowed", func(t *testing.T) {
		remove(frontendOnly)
		checkout.expect(t, "UnaryCall", codes.OK) // no policy: the default's default, Allow
		put(posture)
		for _, c := range callers {
			c.expect(t, "UnaryCall", codes.PermissionDenied)
		}
		put(frontendOnly)
		frontend.expect(t, "UnaryCall", codes.OK)
		alphaFrontend.expect(t, "EmptyCall", codes.OK)
		checkout.expect(t, "UnaryCall", codes.PermissionDenied)
		gammaFrontend.expect(t, "UnaryCall", codes.PermissionDenied)
	})

	t.Run("an address two global services share: every one must allow the call", func(t *testing.T) {
		reads := global("cart-reads")
		reads.Service = &model.ServiceRef{Namespace: "shop", Name: "cart"}
		v.OnUpsert(keyspace.GlobalService("shop", "cart-reads"), reads)
		put(&model.AuthorizationPolicy{Namespace: "shop", Name: "reads", GlobalService: "cart-reads", Action: model.ActionAllow,
			Rules: []model.AuthorizationRule{{Methods: []string{testService + "EmptyCall"}}}})
		frontend.expect(t, "UnaryCall", codes.PermissionDenied) // cart allows it, cart-reads does not
		frontend.expect(t, "EmptyCall", codes.OK)
		checkout.expect(t, "EmptyCall", codes.PermissionDenied) // cart-reads allows it, cart does not
	})

	for i, c := range callers {
		if n := c.dials.Load(); n != dials[i] {
			t.Errorf("%s dialed %d times, %d before the policy changes: the server drained its connection", c.name, n, dials[i])
		}
	}
}

// TestAuthorizationGolden pins what a policy'd server address of the reference
// topology gets from alpha's agent, with mTLS: its listener (RDS, the two RBAC
// filters) and its route configuration (the policies as RBACPerRoute overrides), then
// the route configuration of the same address once a second global service selects
// the same member Service (the strictest: every service must allow a call).
func TestAuthorizationGolden(t *testing.T) {
	v := reference()
	for _, p := range []*model.AuthorizationPolicy{
		{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny},
		{Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: model.ActionAllow,
			Rules: []model.AuthorizationRule{
				{From: []model.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}},
				{From: []model.AuthorizationSource{{Clusters: []string{"beta"}, Namespaces: []string{"ops"}, ServiceAccounts: []string{"admin"}}},
					Methods: []string{"/shop.Cart/Reset"}},
			}},
		{Namespace: "shop", Name: "no-staging", Action: model.ActionDeny,
			Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}, Methods: []string{"/shop.Cart/*"}}}},
		{Namespace: "shop", Name: "reads", GlobalService: "cart-reads", Action: model.ActionAllow,
			Rules: []model.AuthorizationRule{{Methods: []string{"/shop.Cart/Get"}}}},
	} {
		v.OnUpsert(keyspace.AuthorizationPolicy(p.Namespace, p.Name), p)
	}
	s, err := xds.New(xds.Options{Cluster: "alpha", View: v, Addr: "127.0.0.1:0", MTLS: true, TrustDomain: testTrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	g := xds.Group{Region: "us-east", Zone: "us-east-a"}
	now := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	var out bytes.Buffer
	add := func(typ types.ResponseType, name string) {
		snap, err := s.Snapshot(g)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := snap.Resources[typ].Items[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
		if err := r.Resource.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
			t.Errorf("%s fails validation: %v", name, err)
		}
		out.WriteString(render(t, r.Resource))
	}
	if err := s.Rebuild(context.Background(), now, g); err != nil {
		t.Fatal(err)
	}
	add(types.Listener, xds.ServerListenerName("10.0.0.1", 8080))
	add(types.Route, xds.InboundRouteName("10.0.0.1", 8080))
	shapedBy := func(want ...string) {
		t.Helper()
		if got := s.AuthorizationShapedBy(xds.InboundRouteName("10.0.0.1", 8080)); !slices.Equal(got, want) {
			t.Errorf("the route configuration is shaped by %v, want %v", got, want)
		}
	}
	shapedBy("shop/frontend-only", "shop/no-staging", "shop/posture")
	shared := global("cart-reads")
	shared.Service = &model.ServiceRef{Namespace: "shop", Name: "cart"}
	v.OnUpsert(keyspace.GlobalService("shop", "cart-reads"), shared)
	if err := s.Rebuild(context.Background(), now, g); err != nil {
		t.Fatal(err)
	}
	add(types.Route, xds.InboundRouteName("10.0.0.1", 8080))
	shapedBy("shop/frontend-only", "shop/no-staging", "shop/posture", "shop/reads")

	path := filepath.Join("testdata", "authz.golden.json")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestAuthorizationGolden -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("resources differ from %s (run with -update if the change is intended):\n%s", path, out.String())
	}
}
