package eastwest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/internal/xdsnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sniChain is the filter chain an Envoy east-west gateway has per service port.
func sniChain(t *testing.T, cluster string, names ...string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name:             cluster,
		FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: names, TransportProtocol: "tls"},
		Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tcpproxyv3.TcpProxy{
				StatPrefix:       cluster,
				ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
			})},
		}},
	}
}

func gatewayListener(t *testing.T, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: "0.0.0.0_15443",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15443},
		}}},
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{})},
		}},
		FilterChains: chains,
	}
}

type lbEP struct {
	addr     string
	port     uint32
	health   corev3.HealthStatus
	priority uint32
}

func assignment(cluster string, eps ...lbEP) *endpointv3.ClusterLoadAssignment {
	byPrio := map[uint32]*endpointv3.LocalityLbEndpoints{}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	for _, e := range eps {
		loc := byPrio[e.priority]
		if loc == nil {
			loc = &endpointv3.LocalityLbEndpoints{
				Locality: &corev3.Locality{Region: "us-east", Zone: "us-east-a"}, Priority: e.priority,
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}
			byPrio[e.priority] = loc
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HealthStatus: e.health,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: e.addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: e.port},
				}}},
			}},
		})
	}
	return cla
}

func TestFromXDS(t *testing.T) {
	cart, cartSNI := "outbound|8080||cart.shop.svc.clusterset.local", xdsnames.SNI("cart.shop.svc.clusterset.local", 8080)
	pay, paySNI := "outbound|9090||pay.shop.svc.clusterset.local", xdsnames.SNI("pay.shop.svc.clusterset.local", 9090)
	legacySNI := "cart.example.com"
	lis := gatewayListener(t, sniChain(t, cart, cartSNI, strings.ToUpper(legacySNI)), sniChain(t, pay, paySNI))
	if err := lis.ValidateAll(); err != nil {
		t.Fatalf("the test's listener is not valid Envoy config: %v", err)
	}
	healthy, unknown := corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNKNOWN
	tests := map[string]struct {
		assignments map[string]*endpointv3.ClusterLoadAssignment
		want        Routes
	}{
		"ready endpoints; unhealthy and draining left out": {
			assignments: map[string]*endpointv3.ClusterLoadAssignment{
				cart: assignment(cart,
					lbEP{"10.0.0.1", 8080, healthy, 0},
					lbEP{"10.0.0.2", 8080, unknown, 0},
					lbEP{"10.0.0.3", 8080, corev3.HealthStatus_UNHEALTHY, 0},
					lbEP{"10.0.0.4", 8080, corev3.HealthStatus_DRAINING, 0},
					lbEP{"fd00::5", 8080, healthy, 0}),
				pay: assignment(pay, lbEP{"10.0.1.1", 9090, healthy, 0}),
			},
			want: Routes{
				cartSNI:   {ap("10.0.0.1:8080"), ap("10.0.0.2:8080"), ap("[fd00::5]:8080")},
				legacySNI: {ap("10.0.0.1:8080"), ap("10.0.0.2:8080"), ap("[fd00::5]:8080")},
				paySNI:    {ap("10.0.1.1:9090")},
			},
		},
		"lowest priority with a ready endpoint": {
			assignments: map[string]*endpointv3.ClusterLoadAssignment{
				cart: assignment(cart,
					lbEP{"10.0.0.1", 8080, corev3.HealthStatus_UNHEALTHY, 0},
					lbEP{"10.0.0.2", 8080, healthy, 1},
					lbEP{"10.0.0.3", 8080, healthy, 2}),
			},
			want: Routes{cartSNI: {ap("10.0.0.2:8080")}, legacySNI: {ap("10.0.0.2:8080")}, paySNI: nil},
		},
		"no assignment yet: known names without endpoints": {
			assignments: nil,
			want:        Routes{cartSNI: nil, legacySNI: nil, paySNI: nil},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := FromXDS(lis, tc.assignments)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			gw, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := gw.SetRoutes(got); err != nil {
				t.Errorf("SetRoutes refused FromXDS's output: %v", err)
			}
		})
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestFromXDSRefuses(t *testing.T) {
	cart, cartSNI := "outbound|8080||cart", xdsnames.SNI("cart", 8080)
	okCLA := map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"10.0.0.1", 8080, 0, 0})}
	mutate := func(f func(*listenerv3.FilterChain)) *listenerv3.Listener {
		fc := sniChain(t, cart, cartSNI)
		f(fc)
		return gatewayListener(t, fc)
	}
	tests := map[string]struct {
		lis  *listenerv3.Listener
		cla  map[string]*endpointv3.ClusterLoadAssignment
		want string // in the error
	}{
		"no listener": {lis: nil, want: "no listener"},
		"default filter chain": {lis: func() *listenerv3.Listener {
			l := gatewayListener(t, sniChain(t, cart, cartSNI))
			l.DefaultFilterChain = sniChain(t, cart)
			return l
		}(), want: "default filter chain"},
		"catch-all chain":     {lis: gatewayListener(t, sniChain(t, cart)), want: "catch-all"},
		"wildcard name":       {lis: gatewayListener(t, sniChain(t, cart, "*.shop.svc.clusterset.local")), want: "wildcard"},
		"name with a space":   {lis: gatewayListener(t, sniChain(t, cart, "a b")), want: "not allowed"},
		"name in two chains":  {lis: gatewayListener(t, sniChain(t, cart, cartSNI), sniChain(t, "other", strings.ToUpper(cartSNI))), want: "two filter chains"},
		"raw buffer protocol": {lis: mutate(func(fc *listenerv3.FilterChain) { fc.FilterChainMatch.TransportProtocol = "raw_buffer" }), want: "transport_protocol"},
		"destination port": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.FilterChainMatch.DestinationPort = wrapperspb.UInt32(15443)
		}), want: "criteria"},
		"alpn match": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.FilterChainMatch.ApplicationProtocols = []string{"istio-peer-exchange"}
		}), want: "criteria"},
		"terminates tls": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.TransportSocket = &corev3.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{})},
			}
		}), want: "terminate TLS"},
		"two filters": {lis: mutate(func(fc *listenerv3.FilterChain) { fc.Filters = append(fc.Filters, fc.Filters[0]) }), want: "exactly one tcp_proxy"},
		"not tcp_proxy": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{})}
		}), want: "not a tcp_proxy"},
		"weighted clusters": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tcpproxyv3.TcpProxy{
				StatPrefix: "x",
				ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{
					Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: cart, Weight: 1}},
				}},
			})}
		}), want: "weighted_clusters"},
		"hostname endpoint": {lis: gatewayListener(t, sniChain(t, cart, cartSNI)),
			cla: map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"cart.local", 8080, 0, 0})}, want: "not an IP"},
		"endpoint without port": {lis: gatewayListener(t, sniChain(t, cart, cartSNI)),
			cla: map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"10.0.0.1", 0, 0, 0})}, want: "port_value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cla := tc.cla
			if cla == nil {
				cla = okCLA
			}
			got, err := FromXDS(tc.lis, cla)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromXDS = %v, %v; want an error about %q", got, err, tc.want)
			}
		})
	}
}

// TestFromXDSEndToEnd routes a real mTLS connection with routes from xDS.
func TestFromXDSEndToEnd(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	host, port, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|" + "8080" + "||" + host
	b := newBackend(t, "from-xds")
	addr := b.addr()
	routes, err := FromXDS(gatewayListener(t, sniChain(t, cluster, sni)), map[string]*endpointv3.ClusterLoadAssignment{
		cluster: assignment(cluster, lbEP{addr.Addr().String(), uint32(addr.Port()), corev3.HealthStatus_HEALTHY, 0}),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, gwAddr := startGateway(t, Options{}, routes)
	c, name := dialTLS(t, gwAddr, sni)
	defer c.Close()
	if name != "from-xds" || port != 8080 {
		t.Fatalf("reached %q", name)
	}
	echo(t, c, "configured by xDS")
	if got := counter(svc, resultOK); got != 1 {
		t.Errorf("ok = %v", got)
	}
}
