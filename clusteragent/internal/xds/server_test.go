package xds_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"
	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// world is a federation held in a view, with a real gRPC backend per endpoint.
type world struct {
	t        *testing.T
	clock    clock.PassiveClock // the view's and the server's
	v        *view.View
	backends map[string]string // "cluster/zone/i" -> address
	records  map[string]*model.ServiceEndpoints
}

func newWorld(t *testing.T) *world { return newWorldAt(t, clock.RealClock{}) }

// newWorldAt is newWorld on clk: heartbeats are seen, and freshness judged, at its time.
func newWorldAt(t *testing.T, clk clock.PassiveClock) *world {
	w := &world{t: t, clock: clk, v: view.New(view.Options{Clock: clk}), backends: map[string]string{},
		records: map[string]*model.ServiceEndpoints{}}
	// Every cluster has zones of its own, as the sandbox's do.
	for _, c := range []struct{ name, region, z1, z2 string }{
		{"alpha", "us-east", "us-east-1a", "us-east-1b"}, {"beta", "us-east", "us-east-1c", "us-east-1d"},
		{"gamma", "eu-west", "eu-west-1a", "eu-west-1b"},
	} {
		// The backends listen on loopback: the ranges must name it (package admit).
		w.put(keyspace.ClusterInfo(c.name), &model.ClusterInfo{Name: c.name, Region: c.region,
			Zones: []string{c.z1, c.z2}, Network: "default", AddressRanges: []string{"127.0.0.0/8"}})
		w.put(keyspace.ClusterHeartbeat(c.name), &model.Heartbeat{Time: time.Now(), TTL: 15, Agent: c.name})
		rec := &model.ServiceEndpoints{Namespace: "shop", Name: "cart", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
		for _, zone := range []string{c.z1, c.z2} {
			addr := w.backend(c.name + "/" + zone)
			host, port, _ := net.SplitHostPort(addr)
			p, _ := strconv.Atoi(port)
			rec.Endpoints = append(rec.Endpoints, model.Endpoint{Address: host, Zone: zone, Ready: true, Serving: true,
				Ports: []model.EndpointPort{{Name: "grpc", Port: int32(p)}}})
		}
		w.records[c.name] = rec
		w.put(keyspace.ServiceEndpoints(c.name, "shop", "cart"), rec)
	}
	w.put(keyspace.GlobalService("shop", "cart"), &model.GlobalService{Namespace: "shop", Name: "cart",
		Hostname: "cart.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	w.v.OnSynced()
	return w
}

func (w *world) put(key string, rec model.Record) { w.v.OnUpsert(key, rec) }

// backend starts a gRPC echo server that answers with id.
func (w *world) backend(id string) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	s := grpc.NewServer()
	echo.Register(s, id)
	go s.Serve(lis) //nolint:errcheck
	w.t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// setReady marks the endpoints of cluster in zone (every zone if "") ready or not.
func (w *world) setReady(cluster, zone string, ready bool) {
	old := w.records[cluster]
	rec := *old
	rec.Endpoints = append([]model.Endpoint(nil), old.Endpoints...)
	for i := range rec.Endpoints {
		if zone == "" || rec.Endpoints[i].Zone == zone {
			rec.Endpoints[i].Ready, rec.Endpoints[i].Serving = ready, ready
		}
	}
	w.records[cluster] = &rec
	w.put(keyspace.ServiceEndpoints(cluster, "shop", "cart"), &rec)
}

func bootstrap(server, id, region, zone string) []byte {
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "locality": {"region": %q, "zone": %q}},
  "server_listener_resource_name_template": %q
}`, server, id, region, zone, xds.ServerListenerTemplate))
}

// client dials the global service through the xDS server as a proxyless gRPC client
// in the given zone.
func client(t *testing.T, server, region, zone string) *grpc.ClientConn {
	t.Helper()
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap(server, "client-"+zone, region, zone))
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

// landing sends n requests and counts where they landed.
func landing(ctx context.Context, conn *grpc.ClientConn, n int) (map[string]int, error) {
	out := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		id, err := echo.Call(ctx, conn)
		cancel()
		if err != nil {
			return out, err
		}
		out[id]++
	}
	return out, nil
}

// eventuallyAll waits until every one of 20 requests lands on want.
func eventuallyAll(t *testing.T, ctx context.Context, conn *grpc.ClientConn, want string) {
	t.Helper()
	eventuallyAllOf(t, ctx, conn, want)
}

// eventuallyAllOf waits until every one of 20 requests lands on one of want.
func eventuallyAllOf(t *testing.T, ctx context.Context, conn *grpc.ClientConn, want ...string) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("requests to all land on %v", want), func() error {
		got, err := landing(ctx, conn, 20)
		n := 0
		for _, w := range want {
			n += got[w]
		}
		if err != nil || n != 20 {
			return fmt.Errorf("landed %v (err %v)", got, err)
		}
		return nil
	})
}

// startServer runs an xDS server for cluster until the test ends, and waits until it
// listens.
func startServer(t *testing.T, w *world, cluster string) *xds.Server {
	t.Helper()
	s, err := xds.New(xds.Options{Cluster: cluster, View: w.v, Addr: "127.0.0.1:0", Clock: w.clock, Logger: testr.New(t)})
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
	return s
}

// TestLocalityFailover drives a real proxyless gRPC client through zone, cluster and
// region failover and back by changing readiness in the view.
func TestLocalityFailover(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")

	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
	w.setReady("alpha", "us-east-1a", false)
	eventuallyAll(t, ctx, conn, "alpha/us-east-1b")
	w.setReady("alpha", "", false)
	eventuallyAllOf(t, ctx, conn, "beta/us-east-1c", "beta/us-east-1d")
	w.setReady("beta", "", false)
	eventuallyAllOf(t, ctx, conn, "gamma/eu-west-1a", "gamma/eu-west-1b")
	w.setReady("alpha", "", true)
	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
}
