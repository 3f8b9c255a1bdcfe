package fleetbench

import (
	"context"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// stream is one ADS client: what a proxyless gRPC client of the agent's cluster in
// zone opens to watch the load assignments of its services.
type stream struct {
	id       int
	services []int
	cancel   context.CancelFunc
	// first is closed on the first response; responses counts them.
	first     chan struct{}
	responses atomic.Int64
	done      chan struct{}
}

// openStream dials the agent's xDS address on a connection of its own and subscribes
// to the load assignments of services. handle, if set, sees every response's load
// assignments; the tracker sees them always.
func openStream(ctx context.Context, addr string, id int, zone string, services []int, tr *tracker,
	handle func(at time.Time, clas []*endpointv3.ClusterLoadAssignment)) (*stream, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	names := make([]string, len(services))
	bySvc := make(map[string]int, len(services))
	for i, s := range services {
		names[i] = claName(s)
		bySvc[names[i]] = s
	}
	node := &corev3.Node{Id: "fleetbench-" + zone + "-" + itoa(id), Locality: &corev3.Locality{Region: selfRegion, Zone: zone}}
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: names}); err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	st := &stream{id: id, services: services, cancel: cancel, first: make(chan struct{}), done: make(chan struct{})}
	tr.watch(id, services, true)
	go func() {
		defer close(st.done)
		defer conn.Close()
		defer tr.watch(id, services, false)
		for {
			resp, err := ads.Recv()
			if err != nil {
				return
			}
			at := time.Now()
			clas := make([]*endpointv3.ClusterLoadAssignment, 0, len(resp.GetResources()))
			for _, r := range resp.GetResources() {
				cla := &endpointv3.ClusterLoadAssignment{}
				if r.UnmarshalTo(cla) != nil {
					continue
				}
				clas = append(clas, cla)
				s, ok := bySvc[cla.GetClusterName()]
				if !ok {
					continue
				}
				tr.observe(id, s, addresses(cla), at)
			}
			if handle != nil {
				handle(at, clas)
			}
			if st.responses.Add(1) == 1 {
				close(st.first)
			}
			ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if ads.Send(ack) != nil {
				return
			}
		}
	}()
	return st, nil
}

func (st *stream) close() {
	st.cancel()
	<-st.done
}

// addresses are the endpoint addresses a load assignment lists.
func addresses(cla *endpointv3.ClusterLoadAssignment) map[string]bool {
	out := map[string]bool{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
		}
	}
	return out
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}
