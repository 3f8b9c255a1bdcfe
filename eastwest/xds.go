package eastwest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
)

// tcpProxyTypeURL identifies the tcp_proxy network filter by its config's type, not
// by the filter's name, which is free-form.
var tcpProxyTypeURL = "type.googleapis.com/" + string(proto.MessageName(&tcpproxyv3.TcpProxy{}))

// FromXDS translates the xDS of an Envoy east-west gateway into Routes: a Listener
// whose filter chains each match a set of server_names and hold one tcp_proxy filter
// naming a cluster, and the ClusterLoadAssignments of those clusters, by cluster name.
// It is pure: no I/O, no state; the caller passes the result to Gateway.SetRoutes.
//
// Endpoints are those of the lowest priority that has any endpoint whose health is
// HEALTHY or UNKNOWN (Envoy's notion of routable); the others are left out. A cluster
// with no load assignment yet gives its server names an empty endpoint list:
// connections for them are refused as no_endpoint, not unknown_sni.
//
// What this gateway cannot do is refused with an error, so that the caller can NACK
// the update and keep the table it has, rather than route differently from what the
// configuration says: a default filter chain or a chain without server_names
// (catch-all), wildcard server names, any other filter_chain_match criterion than
// server_names and transport_protocol "tls", a transport_socket (TLS termination),
// filters other than one tcp_proxy, weighted clusters or tunneling in tcp_proxy,
// and endpoints that are not IP:port. Timeouts and limits are the gateway's Options,
// not tcp_proxy's fields, which are ignored.
func FromXDS(listener *listenerv3.Listener, assignments map[string]*endpointv3.ClusterLoadAssignment) (Routes, error) {
	if listener == nil {
		return nil, fmt.Errorf("eastwest: no listener")
	}
	if listener.GetDefaultFilterChain() != nil {
		return nil, fmt.Errorf("eastwest: listener %q: a default filter chain is not supported", listener.GetName())
	}
	routes := Routes{}
	for i, fc := range listener.GetFilterChains() {
		names, cluster, err := filterChainRoute(fc)
		if err != nil {
			return nil, fmt.Errorf("eastwest: listener %q, filter chain %d (%q): %w", listener.GetName(), i, fc.GetName(), err)
		}
		eps, err := readyEndpoints(assignments[cluster])
		if err != nil {
			return nil, fmt.Errorf("eastwest: listener %q, cluster %q: %w", listener.GetName(), cluster, err)
		}
		for _, name := range names {
			if _, dup := routes[name]; dup {
				return nil, fmt.Errorf("eastwest: listener %q: server name %q is matched by two filter chains", listener.GetName(), name)
			}
			routes[name] = slices.Clone(eps)
		}
	}
	return routes, nil
}

// filterChainRoute returns the server names a filter chain matches and the cluster
// its tcp_proxy sends them to.
func filterChainRoute(fc *listenerv3.FilterChain) ([]string, string, error) {
	m := fc.GetFilterChainMatch()
	switch {
	case len(m.GetServerNames()) == 0:
		return nil, "", fmt.Errorf("no server_names (a catch-all chain is not supported)")
	case m.GetTransportProtocol() != "" && m.GetTransportProtocol() != "tls":
		return nil, "", fmt.Errorf("transport_protocol %q is not supported", m.GetTransportProtocol())
	case m.GetDestinationPort() != nil, len(m.GetPrefixRanges()) > 0, m.GetAddressSuffix() != "",
		m.GetSuffixLen() != nil, len(m.GetDirectSourcePrefixRanges()) > 0,
		m.GetSourceType() != listenerv3.FilterChainMatch_ANY, len(m.GetSourcePrefixRanges()) > 0,
		len(m.GetSourcePorts()) > 0, len(m.GetApplicationProtocols()) > 0:
		return nil, "", fmt.Errorf("filter_chain_match criteria other than server_names and transport_protocol are not supported")
	case fc.GetTransportSocket() != nil:
		return nil, "", fmt.Errorf("a transport_socket would terminate TLS; the gateway never does")
	case len(fc.GetFilters()) != 1:
		return nil, "", fmt.Errorf("%d network filters; want exactly one tcp_proxy", len(fc.GetFilters()))
	}
	var names []string
	for _, n := range m.GetServerNames() {
		n = strings.ToLower(n)
		if strings.HasPrefix(n, "*") {
			return nil, "", fmt.Errorf("wildcard server name %q is not supported", n)
		}
		if err := validServerName(n); err != nil {
			return nil, "", err
		}
		names = append(names, n)
	}
	f := fc.GetFilters()[0]
	cfg := f.GetTypedConfig()
	if cfg == nil || cfg.GetTypeUrl() != tcpProxyTypeURL {
		return nil, "", fmt.Errorf("filter %q is not a tcp_proxy with a typed_config", f.GetName())
	}
	var tp tcpproxyv3.TcpProxy
	if err := cfg.UnmarshalTo(&tp); err != nil {
		return nil, "", fmt.Errorf("filter %q: %w", f.GetName(), err)
	}
	switch {
	case tp.GetWeightedClusters() != nil:
		return nil, "", fmt.Errorf("tcp_proxy weighted_clusters are not supported")
	case tp.GetTunnelingConfig() != nil:
		return nil, "", fmt.Errorf("tcp_proxy tunneling_config is not supported")
	case tp.GetCluster() == "":
		return nil, "", fmt.Errorf("tcp_proxy names no cluster")
	}
	return names, tp.GetCluster(), nil
}

// readyEndpoints returns the routable endpoints of the lowest priority that has any.
func readyEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]netip.AddrPort, error) {
	byPriority := map[uint32][]netip.AddrPort{}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNKNOWN:
			default:
				continue
			}
			if lb.GetEndpoint() == nil {
				return nil, fmt.Errorf("an lb_endpoint without an endpoint (named endpoints are not supported)")
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, fmt.Errorf("endpoint %v is not a TCP socket address", lb.GetEndpoint().GetAddress())
			}
			ip, err := netip.ParseAddr(sa.GetAddress())
			if err != nil {
				return nil, fmt.Errorf("endpoint address %q is not an IP address", sa.GetAddress())
			}
			port := sa.GetPortValue()
			if port == 0 || port > 65535 {
				return nil, fmt.Errorf("endpoint %s has no port_value in 1-65535", sa.GetAddress())
			}
			p := loc.GetPriority()
			byPriority[p] = append(byPriority[p], netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	if len(byPriority) == 0 {
		return nil, nil
	}
	return byPriority[slices.Min(slices.Collect(maps.Keys(byPriority)))], nil
}
