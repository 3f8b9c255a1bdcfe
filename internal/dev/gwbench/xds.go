package gwbench

import (
	"context"
	"net"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/internal/xdsnames"
)

// xdsServer serves the gateway what its cluster's agent would: the listener
// xdsnames.GatewayListener with an SNI passthrough (tcp_proxy) filter chain per
// route, and each route's load assignment of one endpoint.
type xdsServer struct {
	addr string
	stop func()
}

func startXDS(routes map[string]netip.AddrPort) (*xdsServer, error) {
	lds, eds := cachev3.NewLinearCache(resourcev3.ListenerType), cachev3.NewLinearCache(resourcev3.EndpointType)
	l := &listenerv3.Listener{Name: xdsnames.GatewayListener}
	claims := map[string]types.Resource{}
	for sni, ep := range routes {
		tp, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: sni, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: sni}})
		if err != nil {
			return nil, err
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             sni,
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}},
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
		})
		claims[sni] = &endpointv3.ClusterLoadAssignment{ClusterName: sni, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ep.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ep.Port())}}}},
			}}}},
		}}}
	}
	if err := lds.UpdateResource(xdsnames.GatewayListener, l); err != nil {
		return nil, err
	}
	eds.SetResources(claims)
	mux := &cachev3.MuxCache{
		Classify: func(r *cachev3.Request) string { return r.GetTypeUrl() },
		Caches:   map[string]cachev3.Cache{resourcev3.ListenerType: lds, resourcev3.EndpointType: eds},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, mux, nil))
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(ln) //nolint:errcheck // ends with Stop
	}()
	return &xdsServer{addr: ln.Addr().String(), stop: func() {
		g.Stop()
		cancel()
		<-served
	}}, nil
}
