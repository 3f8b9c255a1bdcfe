package xds_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// rawStream is a raw ADS stream of one type, as a proxy that ACKs and NACKs at will.
type rawStream struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	typ    string
	names  []string
}

func openRaw(ctx context.Context, t *testing.T, addr, id, typ string, names ...string) *rawStream {
	t.Helper()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(dialPlain(t, addr)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawStream{t: t, stream: stream, typ: typ, names: names,
		node: &corev3.Node{Id: id, Locality: &corev3.Locality{Region: "us-east", Zone: "us-east-1a"}}}
	r.send("", "", nil)
	return r
}

func (r *rawStream) send(version, nonce string, nack *statuspb.Status) {
	r.t.Helper()
	if err := r.stream.Send(&discoverygrpc.DiscoveryRequest{Node: r.node, TypeUrl: r.typ, ResourceNames: r.names,
		VersionInfo: version, ResponseNonce: nonce, ErrorDetail: nack}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawStream) recv() *discoverygrpc.DiscoveryResponse {
	r.t.Helper()
	resp, err := r.stream.Recv()
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func (r *rawStream) ack(resp *discoverygrpc.DiscoveryResponse) {
	r.send(resp.GetVersionInfo(), resp.GetNonce(), nil)
}

// eventuallyState waits until the server reports ref in state and returns the entry.
func eventuallyState(t *testing.T, s *xds.Server, ref model.PolicyRef, state string) model.PolicyProgrammed {
	t.Helper()
	var got model.PolicyProgrammed
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s to be %s", ref, state), func() error {
		for _, p := range s.Programmed() {
			if p.Ref == ref {
				got = p
				if p.State == state {
					return nil
				}
				return fmt.Errorf("%s is %s (%s)", ref, p.State, p.Message)
			}
		}
		return fmt.Errorf("%s not reported; reported %+v", ref, s.Programmed())
	})
	return got
}

// TestProgrammedFromACKsAndNACKs: the server judges each policy generation by what the
// streams subscribing to the resources it shaped answered. A generation is Pending
// until every subscriber ACKed a version carrying it, then Programmed; a NACK naming
// such a resource makes it Refused with the (truncated) message and the node; a newer
// generation whose resources a subscriber has not ACKed yet is Pending again; a policy
// whose resources no stream subscribes to is not reported; a real grpc-go client's
// NACK counts like any other.
func TestProgrammedFromACKsAndNACKs(t *testing.T) {
	w := newWorld(t)
	tp := &model.TrafficPolicy{Namespace: "shop", Name: "cart", Generation: 1, GlobalService: "cart",
		LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerRoundRobin}}
	ap := &model.AuthorizationPolicy{Namespace: "shop", Name: "no-staging", Generation: 1, GlobalService: "cart", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}}}}
	w.put(keyspace.TrafficPolicy("shop", "cart"), tp)
	w.put(keyspace.AuthorizationPolicy("shop", "no-staging"), ap)
	// With mTLS, a change of the service accounts allowed to serve cart changes its
	// Cluster resource: a new version the proxies must ACK.
	s, err := xds.New(xds.Options{Cluster: "alpha", View: w.v, Addr: "127.0.0.1:0", MTLS: true, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "xds server", s.Run)
	testutil.Eventually(t, 10*time.Second, "the xDS server to listen", func() error {
		if s.Addr() == "" {
			return fmt.Errorf("no address yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const host = "cart.shop.svc.clusterset.local"
	cds := openRaw(ctx, t, s.Addr(), "proxy-a", resourcev3.ClusterType, xds.ClusterName(host, 8080))
	first := cds.recv()
	tp1 := tp.Ref()
	eventuallyState(t, s, tp1, model.StatePending)
	for _, p := range s.Programmed() {
		if p.Ref.Kind == model.PolicyKindAuthorization {
			t.Errorf("%s reported while no stream subscribes to a resource it shaped", p.Ref)
		}
	}
	cds.ack(first)
	eventuallyState(t, s, tp1, model.StateProgrammed)

	// A server proxy on alpha's first endpoint refuses its listener.
	ep := w.records["alpha"].Endpoints[0]
	listener := xds.ServerListenerName(ep.Address, uint32(ep.Ports[0].Port))
	lds := openRaw(ctx, t, s.Addr(), "server-b", resourcev3.ListenerType, listener)
	refused := lds.recv()
	eventuallyState(t, s, ap.Ref(), model.StatePending)
	msg := fmt.Sprintf("error parsing \"ListenerResource\" response: resource %q: unsupported principal identifier type: %s", listener, strings.Repeat("x", 4096))
	lds.send("", refused.GetNonce(), &statuspb.Status{Code: 3, Message: msg})
	got := eventuallyState(t, s, ap.Ref(), model.StateRefused)
	if len(got.Message) > model.MaxProgrammedMessage || !strings.HasPrefix(got.Message, "error parsing \"ListenerResource\"") {
		t.Errorf("refusal message %q (%d bytes): want the NACK's, cut to %d bytes", got.Message, len(got.Message), model.MaxProgrammedMessage)
	}
	if !strings.Contains(got.Node, "server-b") || !strings.Contains(got.Node, "us-east/us-east-1a") {
		t.Errorf("refusing node %q, want server-b and its locality", got.Node)
	}
	if p := eventuallyState(t, s, tp1, model.StateProgrammed); p.Message != "" {
		t.Errorf("the traffic policy carries a message: %q", p.Message)
	}

	// A new Cluster version reaches the CDS stream; the next generation rides on it
	// and stays Pending until the stream ACKs it.
	beta := *w.records["beta"]
	beta.ServiceAccounts = []string{"cart-v2"}
	w.records["beta"] = &beta
	w.put(keyspace.ServiceEndpoints("beta", "shop", "cart"), &beta)
	second := cds.recv()
	if second.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatalf("no new Cluster version after the accounts changed")
	}
	tp2 := *tp
	tp2.Generation = 2
	w.put(keyspace.TrafficPolicy("shop", "cart"), &tp2)
	eventuallyState(t, s, tp2.Ref(), model.StatePending)
	for _, p := range s.Programmed() {
		if p.Ref == tp1 {
			t.Errorf("generation 1 still reported after generation 2 was tagged")
		}
	}
	cds.ack(second)
	eventuallyState(t, s, tp2.Ref(), model.StateProgrammed)

	// A real proxyless gRPC client without the mTLS certificate provider in its
	// bootstrap refuses the Cluster (grpc-go's own NACK): the generation is Refused
	// with grpc-go's message, and the client's calls fail.
	conn := client(t, s.Addr(), "us-east", "us-east-1a")
	callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = echo.Call(callCtx, conn)
	callCancel()
	if err == nil {
		t.Errorf("a call through a refused Cluster succeeded")
	}
	got = eventuallyState(t, s, tp2.Ref(), model.StateRefused)
	if !strings.Contains(got.Message, "certificate provider") || !strings.Contains(got.Node, "client-us-east-1a") {
		t.Errorf("grpc-go's refusal reported as %q by %q", got.Message, got.Node)
	}

	// The refusing stream goes: nobody subscribes to the refused listener any more.
	cancel()
	testutil.Eventually(t, 10*time.Second, "the closed streams' refusal to go", func() error {
		for _, p := range s.Programmed() {
			if p.Ref.Kind == model.PolicyKindAuthorization {
				return fmt.Errorf("%s still reported: %s", p.Ref, p.State)
			}
		}
		return nil
	})
}
