package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshfed/meshfed/internal/creds/pki"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// The agent's own surfaces (issue 10, item 5): its xDS port serves only workloads of
// its cluster, and what proxies claim about their locality costs it nothing it keeps.
func init() {
	addAttack("agent: an unauthenticated xDS client gets nothing", attackXDSUnauthenticated)
	addAttack("agent: 1,000 fake zones leave its groups and memory where they were", attackFakeZones)
}

const agentAttackTarget = "cart.shop.svc.clusterset.local:8080"

// agentXDSClient is a real proxyless gRPC client of cluster c's agent whose bootstrap has
// channelCreds, in c's first zone.
func agentXDSClient(t *testing.T, c *sandbox.Cluster, id, channelCreds string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": %s, "server_features": ["xds_v3"]}],
  "node": {"id": %q, "locality": {"region": %q, "zone": %q}}
}`, c.XDSAddr, channelCreds, id, c.Region, c.Zones[0])
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+agentAttackTarget, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// agentTLSCreds is a bootstrap's TLS channel credentials: the server checked against
// caFile, and the client certificate in certFile (none if "").
func agentTLSCreds(caFile, certFile, keyFile string) string {
	if certFile == "" {
		return fmt.Sprintf(`[{"type": "tls", "config": {"ca_certificate_file": %q}}]`, caFile)
	}
	return fmt.Sprintf(`[{"type": "tls", "config": {"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q}}]`,
		caFile, certFile, keyFile)
}

// agentForeignCert writes a certificate for a mesh identity (spiffe://meshfed.local/
// ns/shop/sa/client) from a CA of the attacker's own, and returns its files.
func agentForeignCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	ca, err := pki.NewCA("attacker", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.ClientTemplate("proxy")
	id, _ := url.Parse("spiffe://meshfed.local/ns/shop/sa/client")
	tmpl.URIs = []*url.URL{id}
	cert, key, err := ca.Issue(tmpl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// attackXDSUnauthenticated: against alpha's agent, proxyless clients in plaintext,
// without a client certificate, with a mesh identity minted by a foreign CA, and with
// a real workload certificate of another member cluster (beta's) get no resources:
// every call fails, no group is made, and the agent counts the refused handshakes.
// Alpha's own workload is served.
func attackXDSUnauthenticated(t *testing.T, w *attackWorld) {
	alpha, beta := w.s.Cluster("alpha"), w.s.Cluster("beta")
	if alpha.XDSCertDir == "" {
		t.Fatal("the attack world's agents do not require mTLS on xDS")
	}
	ca := alpha.XDSCAFile() // the agent is verified: the refusals are the agent's
	foreignCert, foreignKey := agentForeignCert(t)
	betaDir := filepath.Join(beta.CertDir, "shop", "client")
	groupsBefore := scrape(t, w.ctx, alpha.MetricsAddr, "meshfed_xds_groups")

	for name, creds := range map[string]string{
		"plaintext":                   `[{"type": "insecure"}]`,
		"no client certificate":       agentTLSCreds(ca, "", ""),
		"a foreign CA's identity":     agentTLSCreds(ca, foreignCert, foreignKey),
		"beta's workload certificate": agentTLSCreds(ca, filepath.Join(betaDir, "tls.crt"), filepath.Join(betaDir, "tls.key")),
	} {
		refused := scrape(t, w.ctx, alpha.MetricsAddr, "meshfed_xds_handshake_failures_total")
		conn := agentXDSClient(t, alpha, "attacker", creds)
		failed := 0
		for range 2 {
			ctx, cancel := context.WithTimeout(w.ctx, 3*time.Second)
			if _, err := meshecho.Call(ctx, conn); err != nil {
				failed++
			}
			cancel()
		}
		if failed != 2 {
			t.Errorf("%s: %d of 2 calls succeeded: the client got resources", name, 2-failed)
		}
		// The agent refused it at the handshake, not some other failure.
		testutil.Eventually(t, 30*time.Second, name+": the agent to count its refused handshake", func() error {
			if after := scrape(t, w.ctx, alpha.MetricsAddr, "meshfed_xds_handshake_failures_total"); after <= refused {
				return fmt.Errorf("meshfed_xds_handshake_failures_total still %v", after)
			}
			return nil
		})
		conn.Close()
	}
	if g := scrape(t, w.ctx, alpha.MetricsAddr, "meshfed_xds_groups"); g > groupsBefore {
		t.Errorf("meshfed_xds_groups went from %v to %v: an unauthenticated client joined a group", groupsBefore, g)
	}

	// Alpha's own workload is served, with its mesh certificate.
	own := w.client(t, "alpha", "cart.shop.svc.clusterset.local:8080")
	testutil.Eventually(t, time.Minute, "alpha's own workload to be served", func() error {
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		defer cancel()
		_, err := meshecho.Call(ctx, own)
		return err
	})
}

// attackFakeZones: 1,000 ADS streams on alpha's agent, authenticated with a real
// workload certificate of alpha but each claiming a zone of its own, make no group
// beyond alpha's default one; once they close, the agent's group count is back where
// it was and its heap near it.
func attackFakeZones(t *testing.T, w *attackWorld) {
	alpha := w.s.Cluster("alpha")
	groups := func() float64 { return scrape(t, w.ctx, alpha.MetricsAddr, "meshfed_xds_groups") }
	heap := func() float64 { return scrape(t, w.ctx, alpha.MetricsAddr, "go_memstats_heap_inuse_bytes") / (1 << 20) }
	groupsBefore, heapBefore := groups(), heap()

	conn, err := grpc.NewClient(alpha.XDSAddr, grpc.WithTransportCredentials(alpha.XDSCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(w.ctx)
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	for i := range 1000 {
		stream, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &corev3.Node{Id: fmt.Sprintf("fake-%d", i), Locality: &corev3.Locality{Region: "us-east", Zone: fmt.Sprintf("fake-zone-%d", i)}}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	groupsDuring, heapDuring := groups(), heap()
	if groupsDuring > groupsBefore+1 {
		t.Errorf("with 1,000 fake zones connected: %v groups, %v before: claimed zones made groups (at most the default one may be added)",
			groupsDuring, groupsBefore)
	}
	cancel()
	testutil.Eventually(t, time.Minute, "the agent's groups back where they were", func() error {
		if g := groups(); g != groupsBefore {
			return fmt.Errorf("%v groups, %v before", g, groupsBefore)
		}
		return nil
	})
	heapAfter := heap()
	t.Logf("alpha's agent: groups %v → %v → %v; heap in use %.1f → %.1f → %.1f MiB (before, 1,000 fake zones connected, after)",
		groupsBefore, groupsDuring, groups(), heapBefore, heapDuring, heapAfter)
	// Heap moves with the collector's timing: only a leak of the fake zones' size fails.
	if heapAfter > heapBefore*2+32 {
		t.Errorf("heap in use %.1f MiB after the fake zones closed, %.1f before", heapAfter, heapBefore)
	}
}
