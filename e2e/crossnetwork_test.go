package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/pki"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/trust"
)

// mtlsEchoEnv makes the test binary gRPC echo servers over mTLS: "addr=id,…", with the
// PEM files in tlsEchoDirEnv (ca.crt, tls.crt, tls.key).
const mtlsEchoEnv = "MESHFED_E2E_MTLS_ECHO"

func mtlsEcho(servers []string, dir string) {
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	for _, spec := range servers {
		addr, id, _ := strings.Cut(spec, "=")
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := grpc.NewServer(grpc.Creds(creds))
		meshecho.Register(s, id)
		go s.Serve(l) //nolint:errcheck
	}
	select {}
}

// identity issues a certificate with a SPIFFE ID and writes it, its key and the CA to
// dir for a file_watcher certificate provider or a server.
func identity(t *testing.T, ca *pki.CA, dir, spiffeID string, ips ...string) {
	t.Helper()
	u, _ := url.Parse(spiffeID)
	tmpl := pki.ServerTemplate("workload", ips...)
	tmpl.URIs = append(tmpl.URIs, u)
	certPEM, keyPEM, err := ca.Issue(tmpl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// meshClient dials a global service as a proxyless gRPC client with xDS credentials:
// mTLS with the certificates in dir, SNI from the cluster's TLS context.
func meshClient(t *testing.T, c *sandbox.Cluster, zone, target, dir string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": %s, "server_features": ["xds_v3"]}],
  "node": {"id": "e2e-mesh-client-%s", "locality": {"region": %q, "zone": %q}},
  "certificate_providers": {"meshfed": {"plugin_name": "file_watcher", "config": {
    "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "1s"}}}
}`, c.XDSAddr, c.XDSChannelCreds(), zone, c.Region, zone, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"))
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestCrossNetwork: gamma is on a network of its own. A client in alpha reaches a
// service through gamma's east-west gateway with end-to-end mTLS (the backend sees
// the client's SPIFFE ID); when gamma's gateway stops, alpha's agent marks gamma's
// endpoints unhealthy and traffic moves to the next failover target without any
// outlier detection; a client with a certificate from another root gets nothing.
//
// Every certificate comes from the mesh: cert-manager on the hub holds the root, each
// agent obtained its cluster's intermediate and issued the workloads'.
func TestCrossNetwork(t *testing.T) {
	if os.Getenv("GRPC_EXPERIMENTAL_XDS_SNI") != "true" {
		t.Fatal("GRPC_EXPERIMENTAL_XDS_SNI=true must be in the test process's environment (TestMain sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		SeparateNetwork: true, MTLS: true, MeshCA: true, WorkloadIdentities: []string{"shop/frontend", "shop/inventory"},
		ViewCheckInterval: 5 * time.Second, // the hub exports view_in_sync after the first check (deploy/monitoring)
		Progress:          testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	alpha, beta, gamma := s.Cluster("alpha"), s.Cluster("beta"), s.Cluster("gamma")
	if gamma.Network == alpha.Network {
		t.Fatal("gamma is not on a network of its own")
	}

	// Identities from the mesh: the hub's root in cert-manager signed each cluster's
	// intermediate, from which its agent issued these.
	host := testnet.New(t, 4)
	serverDir := filepath.Join(gamma.CertDir, "shop", "inventory")
	clientDir := filepath.Join(alpha.CertDir, "shop", "frontend")
	testutil.Eventually(t, 2*time.Minute, "workload certificates issued from the mesh root", func() error {
		for _, dir := range []string{serverDir, clientDir} {
			if _, err := os.Stat(filepath.Join(dir, "tls.crt")); err != nil {
				return err
			}
		}
		return nil
	})

	clientCert, _ := os.ReadFile(filepath.Join(clientDir, "tls.crt"))
	bundle, _ := os.ReadFile(filepath.Join(clientDir, "ca.crt"))
	if v, err := trust.Verify(clientCert, bundle, "spiffe://alpha.meshfed.local/ns/shop/sa/frontend"); err != nil || v.Cluster != "alpha" {
		t.Fatalf("client certificate: %+v, %v; want it to chain to the mesh root through alpha's intermediate", v, err)
	}

	// alpha's copy (not ready), gamma's (through its gateway) and beta's.
	// Each copy presents its own cluster's shop/inventory identity, the account its
	// Service says it runs as: clients accept no other.
	copies := map[*sandbox.Cluster]*service{}
	for i, c := range []*sandbox.Cluster{alpha, gamma, beta} {
		addr := host.Addr(i).String()
		copies[c] = &service{namespace: "shop", name: "inventory", port: 8443, endpoints: []endpoint{ready(addr, c.Zones[0])},
			accounts: []string{"inventory"}}
		host.Start(t, "mtls-echo-"+c.Name, []string{meshfedTestBinary(t)}, mtlsEchoEnv+"="+net.JoinHostPort(addr, "8443")+"="+c.Name,
			tlsEchoDirEnv+"="+waitCertDir(t, c, "shop/inventory"))
	}
	copies[alpha].endpoints[0].ready, copies[alpha].endpoints[0].serving = false, false
	for c, svc := range copies {
		if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
			t.Fatal(err)
		}
	}
	// ledger runs in gamma only.
	ledgerAddr := host.Addr(3).String()
	ledger := &service{namespace: "shop", name: "ledger", port: 8443, endpoints: []endpoint{ready(ledgerAddr, gamma.Zones[1])},
		accounts: []string{"inventory"}}
	if err := ledger.apply(ctx, kubernetes.NewForConfigOrDie(gamma.Config())); err != nil {
		t.Fatal(err)
	}
	host.Start(t, "mtls-echo-ledger", []string{meshfedTestBinary(t)}, mtlsEchoEnv+"="+net.JoinHostPort(ledgerAddr, "8443")+"=gamma-ledger",
		tlsEchoDirEnv+"="+serverDir)

	hub := hubClient(t, s)
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "inventory"},
			Spec: v1.FailoverPolicySpec{Failover: []v1.FailoverRule{{From: v1.LocalitySelector{Cluster: "alpha"},
				To: []v1.LocalitySelector{{Cluster: "gamma"}, {Cluster: "beta"}}}}}},
		&v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ledger"},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8443, Protocol: v1.ProtocolGRPC}}}},
		&v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "inventory"},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8443, Protocol: v1.ProtocolGRPC}},
				FailoverPolicyRef: &v1.LocalObjectReference{Name: "inventory"}}},
	}
	for _, o := range objs {
		if err := hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	target := "inventory.shop.svc.clusterset.local:8443"
	conn := meshClient(t, alpha, alpha.Zones[0], target, clientDir)
	lands := func(want string) {
		t.Helper()
		testutil.Eventually(t, waitLong, "requests land on "+want, func() error {
			for range 10 {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				server, peer, err := meshecho.CallPeer(cctx, conn)
				cancel()
				if err != nil {
					return err
				}
				if server != want || peer != "spiffe://alpha.meshfed.local/ns/shop/sa/frontend" {
					return fmt.Errorf("landed on %q, backend saw client %q", server, peer)
				}
			}
			return nil
		})

	}

	t.Run("a service only in gamma, through gamma's gateway", func(t *testing.T) {
		only := meshClient(t, alpha, alpha.Zones[0], "ledger.shop.svc.clusterset.local:8443", clientDir)
		testutil.Eventually(t, waitLong, "requests reach gamma's ledger", func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			server, peer, err := meshecho.CallPeer(cctx, only)
			if err != nil {
				return err
			}
			if server != "gamma-ledger" || peer != "spiffe://alpha.meshfed.local/ns/shop/sa/frontend" {
				return fmt.Errorf("landed on %q, backend saw %q", server, peer)
			}
			return nil
		})

	})
	t.Run("through gamma's gateway with end-to-end mTLS", func(t *testing.T) {
		lands("gamma")
	})
	t.Run("every metric of deploy/monitoring is exported", func(t *testing.T) {
		checkMonitoringMetrics(ctx, t, s) // gamma's gateway has carried traffic
	})
	t.Run("gateway down: next target, no outlier detection", func(t *testing.T) {
		s.StopGateway("gamma", syscall.SIGKILL)
		lands("beta")
		// Not only the client's own reconnect failure: alpha's agent probes gamma's
		// gateway and takes gamma out of the load assignment.
		testutil.Eventually(t, waitLong, "gamma excluded in alpha's priority table", func() error {
			out, err := exec.CommandContext(ctx, meshfedctlBin(), "failover", "explain", "--service", "shop/inventory",
				"--cluster", "alpha", "--zone", alpha.Zones[0], "--dir", s.Dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[1] == "gamma" && f[0] != "-" {
					return fmt.Errorf("gamma still routable:\n%s", out)
				}
			}
			return nil
		})

	})
	t.Run("a foreign root is refused", func(t *testing.T) {
		foreign, err := pki.NewCA("someone else's root", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "foreign")
		identity(t, foreign, dir, "spiffe://alpha.meshfed.local/ns/shop/sa/frontend")
		bad := meshClient(t, alpha, alpha.Zones[0], target, dir)
		for range 5 {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _, err := meshecho.CallPeer(cctx, bad)
			cancel()
			if err == nil {
				t.Fatal("a client with a certificate from a foreign root was served")
			}
		}
		lands("beta") // nothing else is affected
	})
}
