package xds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// adsStream opens a raw ADS stream claiming region/zone, asks for listeners, and
// returns once the first response arrived: the stream has joined its group.
func adsStream(ctx context.Context, t testing.TB, conn *grpc.ClientConn, id, region, zone string) {
	t.Helper()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType,
		Node: &corev3.Node{Id: id, Locality: &corev3.Locality{Region: region, Zone: zone}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("stream %s: %v", id, err)
	}
}

func dialPlain(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestClaimedLocalityIsChecked: a proxy of alpha claiming gamma's region and zone (or
// a zone no cluster declares) is served as alpha's default group: its calls stay in
// alpha, and no snapshot exists for the claimed locality.
func TestClaimedLocalityIsChecked(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	s := startServer(t, w, "alpha")

	foreign := client(t, s.Addr(), "eu-west", "eu-west-1a")
	eventuallyAllOf(t, ctx, foreign, "alpha/us-east-1a", "alpha/us-east-1b")
	undeclared := client(t, s.Addr(), "us-east", "evil-zone-9")
	eventuallyAllOf(t, ctx, undeclared, "alpha/us-east-1a", "alpha/us-east-1b")

	if n := s.Groups(); n != 1 {
		t.Errorf("groups = %d, want 1 (alpha's default group)", n)
	}
	if _, err := s.Snapshot(xds.Group{Region: "us-east"}); err != nil {
		t.Errorf("no snapshot for the default group: %v", err)
	}
	for _, g := range []xds.Group{{Region: "eu-west", Zone: "eu-west-1a"}, {Region: "us-east", Zone: "evil-zone-9"}} {
		if _, err := s.Snapshot(g); err == nil {
			t.Errorf("a snapshot exists for the claimed locality %+v", g)
		}
	}
	// A declared zone is honored: the proxy gets its zone's priorities.
	own := client(t, s.Addr(), "us-east", "us-east-1b")
	eventuallyAll(t, ctx, own, "alpha/us-east-1b")
	if n := s.Groups(); n != 2 {
		t.Errorf("groups = %d, want 2", n)
	}
}

// TestGroupsFreedWhenStreamsClose: 1,000 streams claiming zones of their own join the
// default group; once every stream closed no group is left, and a proxy that comes
// back is served again.
func TestGroupsFreedWhenStreamsClose(t *testing.T) {
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	conn := dialPlain(t, s.Addr())

	ctx, cancel := context.WithCancel(context.Background())
	adsStream(ctx, t, conn, "real", "us-east", "us-east-1a")
	for i := range 1000 {
		adsStream(ctx, t, conn, fmt.Sprintf("fake-%d", i), "us-east", fmt.Sprintf("fake-zone-%d", i))
	}
	if n := s.Groups(); n != 2 {
		t.Errorf("with 1,000 fake zones connected: groups = %d, want 2 (us-east-1a and the default)", n)
	}
	cancel()
	testutil.Eventually(t, 30*time.Second, "every group freed", func() error {
		if n := s.Groups(); n != 0 {
			return fmt.Errorf("%d groups", n)
		}
		if _, err := s.Snapshot(xds.Group{Region: "us-east", Zone: "us-east-1a"}); err == nil {
			return errors.New("us-east-1a's snapshot is still set")
		}
		return nil
	})
	// The group comes back with its next proxy.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	adsStream(ctx2, t, conn, "back", "us-east", "us-east-1a")
	if n := s.Groups(); n != 1 {
		t.Errorf("groups = %d after a proxy came back, want 1", n)
	}
}

// TestFakeZonesLeaveNoTrace measures what 1,000 fake-zone streams cost the server on a
// fleet of 20 clusters × 50 services × 10 endpoints: groups, time per rebuild after an
// endpoint change, and heap, before, while connected and after they closed. It
// asserts only the groups; the table is for people (go test -run FakeZones -v).
func TestFakeZonesLeaveNoTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	v, _ := fleet(20, 50, 10)
	v.OnSynced()
	reg := prometheus.NewRegistry()
	xds.RegisterMetrics(reg)
	s, err := xds.New(xds.Options{Cluster: "c000", View: v, Addr: "127.0.0.1:0", Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "xds server", s.Run)
	testutil.Eventually(t, 10*time.Second, "the xDS server to listen", func() error {
		if s.Addr() == "" {
			return errors.New("no address yet")
		}
		return nil
	})
	conn := dialPlain(t, s.Addr())
	real, cancelReal := context.WithCancel(context.Background())
	defer cancelReal()
	adsStream(real, t, conn, "real", "region-0", "c000-a")

	change := 0
	rebuild := func() float64 { // mean ms per rebuild over 20 endpoint changes
		sum0, n0 := histogram(t, reg, "meshfed_xds_rebuild_seconds")
		for range 20 {
			_, before := histogram(t, reg, "meshfed_xds_rebuild_seconds")
			change++
			v.OnUpsert(keyspace.ServiceEndpoints("c001", "ns", "svc001"), &model.ServiceEndpoints{Namespace: "ns", Name: "svc001",
				Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}, Endpoints: []model.Endpoint{{Address: fmt.Sprintf("10.200.0.%d", change%250),
					Zone: "c001-a", Ready: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}}}})
			testutil.Eventually(t, 30*time.Second, "the rebuild", func() error {
				if _, n := histogram(t, reg, "meshfed_xds_rebuild_seconds"); n <= before {
					return fmt.Errorf("%d rebuilds", n)
				}
				return nil
			})
		}
		sum, n := histogram(t, reg, "meshfed_xds_rebuild_seconds")
		return (sum - sum0) / float64(n-n0) * 1000
	}
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapInuse) / (1 << 20)
	}
	type row struct {
		phase      string
		groups     int
		ms, heapMB float64
	}
	rows := []row{{"before", s.Groups(), rebuild(), heap()}}

	fakes, cancelFakes := context.WithCancel(context.Background())
	for i := range 1000 {
		adsStream(fakes, t, conn, fmt.Sprintf("fake-%d", i), "region-0", fmt.Sprintf("fake-zone-%d", i))
	}
	rows = append(rows, row{"1,000 fake zones connected", s.Groups(), rebuild(), heap()})
	cancelFakes()
	testutil.Eventually(t, 30*time.Second, "the default group freed", func() error {
		if n := s.Groups(); n != 1 {
			return fmt.Errorf("%d groups", n)
		}
		return nil
	})
	rows = append(rows, row{"after they closed", s.Groups(), rebuild(), heap()})

	t.Logf("%-28s %7s %12s %9s", "phase", "groups", "rebuild ms", "heap MiB")
	for _, r := range rows {
		t.Logf("%-28s %7d %12.3f %9.1f", r.phase, r.groups, r.ms, r.heapMB)
	}
	if rows[0].groups != 1 || rows[1].groups != 2 || rows[2].groups != rows[0].groups {
		t.Errorf("groups before, connected, after = %d, %d, %d; want 1, 2, 1", rows[0].groups, rows[1].groups, rows[2].groups)
	}
}

// histogram is a histogram's sum and count in reg.
func histogram(t testing.TB, reg *prometheus.Registry, name string) (float64, uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	return 0, 0
}

// mtlsFiles is a CA with a server certificate for 127.0.0.1 and a client certificate,
// and a foreign CA's client certificate, in a directory.
type mtlsFiles struct {
	dir                     string
	serverCert, serverKey   []byte
	ca                      *pki.CA
	caFile                  string
	clientCert, clientKey   string // issued by ca
	foreignCert, foreignKey string // issued by another CA
}

func newMTLSFiles(t *testing.T) *mtlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, err := pki.NewCA("mesh", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewCA("foreign", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &mtlsFiles{dir: dir, ca: ca, caFile: write("ca.crt", pki.EncodeCert(ca.Cert.Raw))}
	if f.serverCert, f.serverKey, err = ca.Issue(pki.ServerTemplate("xds", "127.0.0.1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(pki.ClientTemplate("proxy"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.clientCert, f.clientKey = write("client.crt", cert), write("client.key", key)
	cert, key, err = foreign.Issue(pki.ClientTemplate("proxy"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.foreignCert, f.foreignKey = write("foreign.crt", cert), write("foreign.key", key)
	return f
}

// tlsBootstrap is a proxyless client's bootstrap with TLS channel credentials:
// the server verified against caFile, and the client certificate certFile if any.
func tlsBootstrap(server, id, caFile, certFile, keyFile string) []byte {
	creds := fmt.Sprintf(`{"ca_certificate_file": %q}`, caFile)
	if certFile != "" {
		creds = fmt.Sprintf(`{"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q}`, caFile, certFile, keyFile)
	}
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "tls", "config": %s}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "locality": {"region": "us-east", "zone": "us-east-1a"}}
}`, server, creds, id))
}

// TestUnauthenticatedClientGetsNothing: with TLS requiring client certificates, a
// real proxyless gRPC client without a certificate, or with one from a foreign CA,
// gets no resource (its calls fail, no group is made for it); a client with a mesh
// certificate is served.
func TestUnauthenticatedClientGetsNothing(t *testing.T) {
	ctx := context.Background()
	files := newMTLSFiles(t)
	cert, err := tls.X509KeyPair(files.serverCert, files.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(files.ca.Cert)
	w := newWorld(t)
	s, err := xds.New(xds.Options{Cluster: "alpha", View: w.v, Addr: "127.0.0.1:0", Logger: testr.New(t),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "xds server", s.Run)
	testutil.Eventually(t, 10*time.Second, "the xDS server to listen", func() error {
		if s.Addr() == "" {
			return errors.New("no address yet")
		}
		return nil
	})
	dial := func(bootstrap []byte) *grpc.ClientConn {
		resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("xds:///cart.shop.svc.clusterset.local:8080",
			grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	for name, bootstrap := range map[string][]byte{
		"no client certificate":         tlsBootstrap(s.Addr(), "anonymous", files.caFile, "", ""),
		"a foreign CA's certificate":    tlsBootstrap(s.Addr(), "foreign", files.caFile, files.foreignCert, files.foreignKey),
		"plaintext to the TLS xDS port": bootstrap(s.Addr(), "plaintext", "us-east", "us-east-1a"),
	} {
		conn := dial(bootstrap)
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := echo.Call(cctx, conn)
		cancel()
		if err == nil {
			t.Errorf("%s: the call succeeded: the client got resources", name)
		}
		if n := s.Groups(); n != 0 {
			t.Errorf("%s: %d groups: an unauthenticated stream joined", name, n)
		}
	}
	conn := dial(tlsBootstrap(s.Addr(), "proxy", files.caFile, files.clientCert, files.clientKey))
	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
}
