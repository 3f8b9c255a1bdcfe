package xds

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/internal/xdsnames"
)

// The east-west gateway of this cluster gets, like an Envoy east-west gateway would, a
// listener whose filter chains match the SNI of each global service port and pass the
// TLS stream untouched (tcp_proxy) to a cluster of this cluster's ready endpoints.

// gatewayListener routes by SNI to the gateway's clusters.
func gatewayListener(targets []Target, port uint32) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:    xdsnames.GatewayListener,
		Address: socketAddress("0.0.0.0", port),
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}},
	}
	for _, t := range targets {
		sni := xdsnames.SNI(t.Hostname, t.Port)
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             sni,
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}},
			Filters: []*listenerv3.Filter{{
				Name: "envoy.filters.network.tcp_proxy",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{
					StatPrefix:       sni,
					ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: sni},
				})},
			}},
		})
	}
	return l
}

// gatewayCluster is the gateway's cluster of a global service port's local endpoints.
func gatewayCluster(t Target) *clusterv3.Cluster {
	sni := xdsnames.SNI(t.Hostname, t.Port)
	return &clusterv3.Cluster{
		Name:                 sni,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: sni},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// gatewayAssignment lists this cluster's ready endpoints of a target, one locality
// per zone, all at priority 0: the gateway serves its own cluster only.
func gatewayAssignment(self string, t Target) *endpointv3.ClusterLoadAssignment {
	var local []LocalityEndpoints
	for _, l := range t.Localities {
		if l.Cluster == self && len(l.Healthy) > 0 {
			local = append(local, LocalityEndpoints{Region: l.Region, Zone: l.Zone, Cluster: l.Cluster,
				Weight: uint32(len(l.Healthy)), Endpoints: l.Healthy})
		}
	}
	cla := loadAssignment(t.Hostname, t.Port, local)
	cla.ClusterName = xdsnames.SNI(t.Hostname, t.Port)
	return cla
}
