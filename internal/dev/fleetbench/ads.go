package fleetbench

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
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
			// The benchmark shares the machine with the agent: a stream reads only
			// the name of each load assignment and looks for the changed addresses
			// in its bytes, decoding it whole only for handle.
			var clas []*endpointv3.ClusterLoadAssignment
			for _, r := range resp.GetResources() {
				if handle != nil {
					cla := &endpointv3.ClusterLoadAssignment{}
					if r.UnmarshalTo(cla) == nil {
						clas = append(clas, cla)
					}
				}
				s, ok := bySvc[clusterNameOf(r.GetValue())]
				if !ok {
					continue
				}
				value := r.GetValue()
				tr.observe(id, s, func(addr string) bool { return bytes.Contains(value, addressField(addr)) }, at)
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

// clusterNameOf reads the cluster_name of a serialized ClusterLoadAssignment.
func clusterNameOf(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == clusterNameField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

var (
	clusterNameField = (&endpointv3.ClusterLoadAssignment{}).ProtoReflect().Descriptor().Fields().ByName("cluster_name").Number()
	addressNumber    = (&corev3.SocketAddress{}).ProtoReflect().Descriptor().Fields().ByName("address").Number()
)

// addressField is the serialized address field of a SocketAddress of addr: present
// in a load assignment's bytes if and only if it lists addr (the length prefix keeps
// 10.0.0.1 from matching inside 10.0.0.10).
func addressField(addr string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, addressNumber, protowire.BytesType), addr)
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}
