package eastwest

import (
	"maps"
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
			got, rejected, err := FromXDS(lis, tc.assignments)
			if err != nil || len(rejected) > 0 {
				t.Fatalf("FromXDS: %v, rejected %v", err, rejected)
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

// longHostname is 240 bytes, a valid DNS name whose SNI (outbound_.<port>_._.<host>)
// is over the 255 bytes a TLS server name may have.
var longHostname = strings.Repeat(strings.Repeat("a", 62)+".", 3) + strings.Repeat("b", 51)

// TestFromXDSRefuses: each part the gateway cannot honour is refused on its own, with
// a reason naming the field, and the good chain beside it is translated as usual.
func TestFromXDSRefuses(t *testing.T) {
	if len(longHostname) != 240 {
		t.Fatalf("longHostname has %d bytes", len(longHostname))
	}
	cart, cartSNI := "outbound|8080||cart", xdsnames.SNI("cart", 8080)
	pay, paySNI := "outbound|9090||pay", xdsnames.SNI("pay", 9090)
	okCLA := map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"10.0.0.1", 8080, 0, 0})}
	mutate := func(f func(*listenerv3.FilterChain)) *listenerv3.Listener {
		fc := sniChain(t, cart, cartSNI)
		f(fc)
		return gatewayListener(t, fc)
	}
	tests := map[string]struct {
		lis    *listenerv3.Listener
		cla    map[string]*endpointv3.ClusterLoadAssignment
		reason string
		want   string // in the rejection
	}{
		"default filter chain": {lis: func() *listenerv3.Listener {
			l := gatewayListener(t)
			l.DefaultFilterChain = sniChain(t, cart)
			return l
		}(), reason: rejectDefaultChain, want: "default filter chain"},
		"catch-all chain":     {lis: gatewayListener(t, sniChain(t, cart)), reason: rejectFilterChain, want: "catch-all"},
		"wildcard name":       {lis: gatewayListener(t, sniChain(t, cart, "*.shop.svc.clusterset.local")), reason: rejectServerName, want: "wildcard"},
		"name with a space":   {lis: gatewayListener(t, sniChain(t, cart, "a b")), reason: rejectServerName, want: "not allowed"},
		"name over 255 bytes": {lis: gatewayListener(t, sniChain(t, cart, xdsnames.SNI(longHostname, 8080))), reason: rejectServerName, want: "length must be 1-255"},
		"name in two chains": {lis: gatewayListener(t, sniChain(t, cart, cartSNI), sniChain(t, "other", strings.ToUpper(cartSNI))),
			reason: rejectDuplicateName, want: "also matched by filter chain 0"},
		"raw buffer protocol": {lis: mutate(func(fc *listenerv3.FilterChain) { fc.FilterChainMatch.TransportProtocol = "raw_buffer" }), reason: rejectFilterChain, want: "transport_protocol"},
		"destination port": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.FilterChainMatch.DestinationPort = wrapperspb.UInt32(15443)
		}), reason: rejectFilterChain, want: "criteria"},
		"alpn match": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.FilterChainMatch.ApplicationProtocols = []string{"istio-peer-exchange"}
		}), reason: rejectFilterChain, want: "criteria"},
		"terminates tls": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.TransportSocket = &corev3.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: anyOf(t, &tlsv3.DownstreamTlsContext{})},
			}
		}), reason: rejectFilterChain, want: "terminate TLS"},
		"two filters": {lis: mutate(func(fc *listenerv3.FilterChain) { fc.Filters = append(fc.Filters, fc.Filters[0]) }), reason: rejectFilterChain, want: "exactly one tcp_proxy"},
		"not tcp_proxy": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tlsinspectorv3.TlsInspector{})}
		}), reason: rejectFilterChain, want: "not a tcp_proxy"},
		"weighted clusters": {lis: mutate(func(fc *listenerv3.FilterChain) {
			fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, &tcpproxyv3.TcpProxy{
				StatPrefix: "x",
				ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{
					Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: cart, Weight: 1}},
				}},
			})}
		}), reason: rejectFilterChain, want: "weighted_clusters"},
		"hostname endpoint": {lis: gatewayListener(t, sniChain(t, cart, cartSNI)),
			cla: map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"cart.local", 8080, 0, 0})}, reason: rejectEndpoints, want: "not an IP"},
		"unspecified endpoint": {lis: gatewayListener(t, sniChain(t, cart, cartSNI)),
			cla: map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"0.0.0.0", 8080, 0, 0})}, reason: rejectEndpoints, want: "not dialable"},
		"endpoint without port": {lis: gatewayListener(t, sniChain(t, cart, cartSNI)),
			cla: map[string]*endpointv3.ClusterLoadAssignment{cart: assignment(cart, lbEP{"10.0.0.1", 0, 0, 0})}, reason: rejectEndpoints, want: "port_value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cla := maps.Clone(tc.cla)
			if cla == nil {
				cla = maps.Clone(okCLA)
			}
			cla[pay] = assignment(pay, lbEP{"10.0.1.1", 9090, 0, 0})
			tc.lis.FilterChains = append(tc.lis.FilterChains, sniChain(t, pay, paySNI))
			got, rejected, err := FromXDS(tc.lis, cla)
			if err != nil {
				t.Fatal(err)
			}
			if len(rejected) != 1 || rejected[0].Reason != tc.reason || !strings.Contains(rejected[0].Error(), tc.want) {
				t.Errorf("rejected %v; want one %s about %q", rejected, tc.reason, tc.want)
			}
			want := Routes{paySNI: {ap("10.0.1.1:9090")}}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("routes beside the refused part (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := FromXDS(nil, okCLA); err == nil || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("FromXDS(nil) = %v, want an error about no listener", err)
	}
}

// TestFromXDSEndToEnd routes a real mTLS connection with routes from xDS.
func TestFromXDSEndToEnd(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	host, port, _ := xdsnames.ParseSNI(sni)
	cluster := "outbound|" + "8080" + "||" + host
	b := newBackend(t, "from-xds")
	addr := b.addr()
	routes, _, err := FromXDS(gatewayListener(t, sniChain(t, cluster, sni)), map[string]*endpointv3.ClusterLoadAssignment{
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
