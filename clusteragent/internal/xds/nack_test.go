package xds_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
)

// TestNACKWaitsForANewerSnapshot: a proxy that refuses a load assignment is not sent
// the same one again at once (grpc-go does not pace its NACKs, so the two would
// spin), but gets the next one when the view changes.
func TestNACKWaitsForANewerSnapshot(t *testing.T) {
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "nack-test", Locality: &corev3.Locality{Region: "us-east", Zone: "us-east-1a"}}
	name := xds.ClusterName("cart.shop.svc.clusterset.local", 8080)
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	refused, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name},
		ResponseNonce: refused.GetNonce(), ErrorDetail: &statuspb.Status{Code: 3, Message: "refused by the test"}}); err != nil {
		t.Fatal(err)
	}
	w.setReady("alpha", "us-east-1a", false)
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetVersionInfo() == refused.GetVersionInfo() {
		t.Fatalf("after a NACK of version %s the server sent it again", refused.GetVersionInfo())
	}
}
