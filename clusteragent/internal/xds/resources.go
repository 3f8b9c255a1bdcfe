package xds

import (
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/internal/xdsnames"
	"github.com/meshfed/meshfed/trust"
)

// Resource names follow Istio's conventions, so that an Envoy sidecar or gateway
// configured by meshfed reads like one configured by istiod.

// ListenerName is the client-side listener of a global service port: the name
// proxyless gRPC asks for when dialing xds:///<hostname>:<port>.
func ListenerName(hostname string, port uint32) string {
	return net.JoinHostPort(hostname, strconv.FormatUint(uint64(port), 10))
}

// ClusterName is the cluster (and load assignment) of a global service port.
func ClusterName(hostname string, port uint32) string {
	return fmt.Sprintf("outbound|%d||%s", port, hostname)
}

// ServerListenerName is the listener a proxyless gRPC server listening on addr asks
// for, with the default server_listener_resource_name_template.
func ServerListenerName(addr string, port uint32) string {
	return "grpc/server?xds.resource.listening_address=" + net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
}

// ServerListenerTemplate is the bootstrap's server_listener_resource_name_template
// that ServerListenerName follows.
const ServerListenerTemplate = xdsnames.ServerListenerTemplate

const connectTimeout = 5 * time.Second

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages of linked-in types: cannot fail
	}
	return a
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// clientListener is the API listener of a global service port, routing through RDS;
// filters go before the router.
func clientListener(hostname string, port uint32, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	name := ListenerName(hostname, port)
	manager := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: name,
		}},
		HttpFilters: append(filters, routerFilter()),
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(manager)}}
}

// routeConfig sends every request for the global service port to its cluster.
func routeConfig(hostname string, port uint32) *routev3.RouteConfiguration {
	name := ListenerName(hostname, port)
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{hostname, name},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(hostname, port)},
					// A request that failed to reach a copy that just died is retried on
					// another: together with priorities, clients see no failure.
					RetryPolicy: defaultRetry(),
				}},
			}},
		}},
	}
}

// edsCluster is the cluster of a global service port, its endpoints from EDS, with
// mTLS to every endpoint unless trustDomain is "" (mTLS off): the client's certificate
// and the mesh's roots come from the proxy's certificate provider instance
// CertificateProvider, the server must hold exactly one of the identities of accounts
// (see sanMatchers), and the SNI names the service port so that an east-west gateway
// can route the stream without terminating it. A proxyless gRPC client uses this only
// with xDS credentials (and GRPC_EXPERIMENTAL_XDS_SNI=true for the SNI), but its
// bootstrap must define the provider instance in any case: grpc-go refuses the
// cluster otherwise.
func edsCluster(hostname string, port uint32, trustDomain string, accounts []Account) *clusterv3.Cluster {
	name := ClusterName(hostname, port)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if trustDomain == "" {
		return c // plaintext: mTLS is off
	}
	upstream := &tlsv3.UpstreamTlsContext{
		Sni: xdsnames.SNI(hostname, port),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider},
				MatchSubjectAltNames:          sanMatchers(trustDomain, accounts),
			}},
		},
	}
	c.TransportSocket = &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(upstream)},
	}
	return c
}

// NoIdentity is the only SAN a cluster of a global service without any account
// accepts: not a SPIFFE ID, so no mesh CA signs it (a cluster's intermediate may sign
// URIs of its own identity domain only). An empty matcher list would accept every
// identity of the mesh.
const NoIdentity = "meshfed:no-identity-may-serve"

// sanMatchers are the exact SPIFFE IDs of accounts: a server is accepted only with
// one of them, never by a prefix of the trust domain.
func sanMatchers(trustDomain string, accounts []Account) []*matcherv3.StringMatcher {
	if len(accounts) == 0 {
		return []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: NoIdentity}}}
	}
	out := make([]*matcherv3.StringMatcher, 0, len(accounts))
	for _, a := range accounts {
		out = append(out, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{
			Exact: trust.ServiceAccountID(trustDomain, a.Cluster, a.Namespace, a.Name),
		}})
	}
	return out
}

// CertificateProvider is the certificate provider instance a proxy's bootstrap must
// define (e.g. grpc-go's file_watcher plugin) for meshfed's mTLS: its identity
// certificate and key, and the mesh's trust bundle.
const CertificateProvider = "meshfed"

// LocalityEndpoints is one locality's healthy endpoints with its place in the
// priority table.
type LocalityEndpoints struct {
	Region, Zone, Cluster string
	Priority              uint32
	Weight                uint32
	// Endpoints are ip:port pairs.
	Endpoints []Endpoint
}

// Endpoint is one address to send traffic to.
type Endpoint struct {
	Address string
	Port    uint32
	// Subset is the TrafficPolicy subset the endpoint is in ("": none, or the service
	// has no subsets): only subsets' load assignments read it (SubsetTarget).
	Subset string
}

// loadAssignment lists the endpoints of a global service port by locality and
// priority. Only healthy endpoints are listed; the sub-zone carries the cluster so
// that the same zone in two clusters stays two localities.
func loadAssignment(hostname string, port uint32, localities []LocalityEndpoints) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{
		ClusterName: ClusterName(hostname, port),
		// Priorities and weights already carry meshfed's spill-over (MinHealthyPercent):
		// a factor of 100 keeps Envoy from spilling over a second time.
		Policy: &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(100)},
	}
	for _, l := range localities {
		lle := localityHeader(l)
		lle.LbEndpoints = lbEndpoints(l.Endpoints)
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// localityOf is the locality of l in a load assignment: the sub-zone carries the
// cluster.
func localityOf(l LocalityEndpoints) *corev3.Locality {
	return &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.Cluster}
}

// lbEndpoints are the healthy endpoints of a load assignment's locality.
func lbEndpoints(endpoints []Endpoint) []*endpointv3.LbEndpoint {
	out := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, e := range endpoints {
		out = append(out, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.Address, e.Port)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
		})
	}
	return out
}

// serverListener is what a proxyless gRPC server listening on addr:port gets: accept
// everything, authorize each call with the RBAC filters DenyFilter and AllowFilter
// (no-op here: the route configuration InboundRouteName, served over ADS, overrides
// them with the authorization policies, so that a policy change never drains the
// server's connections; see authz.go), and hand it to the server's own handlers. With
// mTLS (mtls), its filter chain's DownstreamTlsContext requires a client certificate
// that chains to the mesh's roots, and the server presents its own: both from the
// server's certificate provider instance CertificateProvider, as clients take
// theirs. grpc-go accepts no SAN matcher on the server side: which mesh identities
// may call is the RBAC filters' decision.
func serverListener(addr string, port uint32, mtls bool) *listenerv3.Listener {
	name := ServerListenerName(addr, port)
	manager := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: InboundRouteName(addr, port),
		}},
		HttpFilters: append(rbacFilters(), routerFilter()),
	}
	chain := &listenerv3.FilterChain{
		Name: "inbound",
		Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(manager)},
		}},
	}
	if mtls {
		downstream := &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider},
				}},
			},
		}
		chain.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(downstream)},
		}
	}
	return &listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(addr, port),
		FilterChains: []*listenerv3.FilterChain{chain},
	}
}
