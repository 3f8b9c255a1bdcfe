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

// Rejection reasons, the "reason" label of meshfed_gateway_rejected_routes.
const (
	rejectDefaultChain  = "default_filter_chain"     // a default (catch-all) filter chain
	rejectFilterChain   = "unsupported_filter_chain" // a chain the gateway cannot honour (match criteria, TLS termination, filters)
	rejectServerName    = "invalid_server_name"      // a wildcard, over 255 bytes, or a byte a ClientHello may not carry
	rejectDuplicateName = "duplicate_server_name"    // one name matched by two filter chains
	rejectEndpoints     = "invalid_endpoints"        // a load assignment with an endpoint that is not a dialable IP:port
)

// RouteRejection is one part of the gateway's xDS that FromXDS refused: one filter
// chain, or one server name of a chain, or the load assignment of a chain's cluster.
// The rest of the configuration is translated without it.
type RouteRejection struct {
	// Chain is the filter chain's index and name, as the listener lists it.
	Chain string
	// Names are the server names the refused part claimed (lower-cased; empty when
	// the chain names none). No route for them is built from this configuration.
	Names []string
	// Cluster is the chain's tcp_proxy cluster, when it got that far.
	Cluster string
	// Reason is a short constant, what the rejected-routes metric counts by.
	Reason string
	// Err says what is wrong, naming the field.
	Err error
}

func (r RouteRejection) Error() string {
	switch len(r.Names) {
	case 0:
		return fmt.Sprintf("filter chain %s: %v", r.Chain, r.Err)
	case 1:
		return fmt.Sprintf("filter chain %s, server name %q: %v", r.Chain, r.Names[0], r.Err)
	default:
		return fmt.Sprintf("filter chain %s, server names %q: %v", r.Chain, r.Names, r.Err)
	}
}

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
// What this gateway cannot do is refused, part by part, rather than routed
// differently from what the configuration says: each refused part is left out of the
// routes and returned as a RouteRejection, and every other route is translated as if
// it were absent, so that one bad route never holds back the others. Refused are: a
// default filter chain or a chain without server_names (catch-all); in a chain,
// any other filter_chain_match criterion than server_names and transport_protocol
// "tls", a transport_socket (TLS termination), filters other than one tcp_proxy,
// weighted clusters or tunneling in tcp_proxy (the whole chain); a wildcard server
// name, one over 255 bytes or with a byte a ClientHello may not carry (that name);
// a name matched by two chains (that name, in both); a load assignment with an
// endpoint that is not a dialable IP:port (every name of the chains using it).
// Timeouts and limits are the gateway's Options, not tcp_proxy's fields, which are
// ignored. The error is for a missing listener only.
func FromXDS(listener *listenerv3.Listener, assignments map[string]*endpointv3.ClusterLoadAssignment) (Routes, []RouteRejection, error) {
	if listener == nil {
		return nil, nil, fmt.Errorf("eastwest: no listener")
	}
	var rejected []RouteRejection
	if listener.GetDefaultFilterChain() != nil {
		rejected = append(rejected, RouteRejection{Chain: fmt.Sprintf("default (%q)", listener.GetDefaultFilterChain().GetName()),
			Reason: rejectDefaultChain, Err: fmt.Errorf("a default filter chain is not supported (the gateway routes only the names it is given)")})
	}
	routes := Routes{}
	claimedBy := map[string]string{} // server name -> the chain that claimed it first
	duplicate := map[string]bool{}
	for i, fc := range listener.GetFilterChains() {
		chain := fmt.Sprintf("%d (%q)", i, fc.GetName())
		names, bad, cluster, err := filterChainRoute(fc)
		if err != nil {
			rejected = append(rejected, RouteRejection{Chain: chain, Names: names, Cluster: cluster, Reason: rejectFilterChain, Err: err})
			continue
		}
		for _, b := range bad {
			rejected = append(rejected, RouteRejection{Chain: chain, Names: []string{b.name}, Cluster: cluster, Reason: rejectServerName, Err: b.err})
		}
		eps, err := readyEndpoints(assignments[cluster])
		routable := err == nil
		if !routable {
			rejected = append(rejected, RouteRejection{Chain: chain, Names: names, Cluster: cluster, Reason: rejectEndpoints,
				Err: fmt.Errorf("cluster %q: %w", cluster, err)})
		}
		for _, name := range names {
			if first, dup := claimedBy[name]; dup {
				if !duplicate[name] {
					rejected = append(rejected, RouteRejection{Chain: chain, Names: []string{name}, Cluster: cluster, Reason: rejectDuplicateName,
						Err: fmt.Errorf("also matched by filter chain %s", first)})
				}
				duplicate[name] = true
				delete(routes, name)
				continue
			}
			claimedBy[name] = chain // claimed even when not routable, for the check above
			if routable {
				routes[name] = slices.Clone(eps)
			}
		}
	}
	return routes, rejected, nil
}

// badName is a server name of a chain that was refused, and why.
type badName struct {
	name string
	err  error
}

// filterChainRoute returns the server names a filter chain matches, those of its
// names that cannot be routed, and the cluster its tcp_proxy sends them to. An error
// refuses the whole chain; names are then what it claimed, as far as they are known.
func filterChainRoute(fc *listenerv3.FilterChain) (names []string, bad []badName, cluster string, err error) {
	m := fc.GetFilterChainMatch()
	for _, n := range m.GetServerNames() {
		n = strings.ToLower(n)
		switch {
		case strings.HasPrefix(n, "*"):
			bad = append(bad, badName{n, fmt.Errorf("wildcard server names are not supported")})
		case validServerName(n) != nil:
			bad = append(bad, badName{n, validServerName(n)})
		default:
			names = append(names, n)
		}
	}
	defer func() {
		if err != nil {
			for _, b := range bad {
				names = append(names, b.name)
			}
			bad = nil
		}
	}()
	switch {
	case len(m.GetServerNames()) == 0:
		return names, bad, "", fmt.Errorf("no server_names (a catch-all chain is not supported)")
	case m.GetTransportProtocol() != "" && m.GetTransportProtocol() != "tls":
		return names, bad, "", fmt.Errorf("transport_protocol %q is not supported", m.GetTransportProtocol())
	case m.GetDestinationPort() != nil, len(m.GetPrefixRanges()) > 0, m.GetAddressSuffix() != "",
		m.GetSuffixLen() != nil, len(m.GetDirectSourcePrefixRanges()) > 0,
		m.GetSourceType() != listenerv3.FilterChainMatch_ANY, len(m.GetSourcePrefixRanges()) > 0,
		len(m.GetSourcePorts()) > 0, len(m.GetApplicationProtocols()) > 0:
		return names, bad, "", fmt.Errorf("filter_chain_match criteria other than server_names and transport_protocol are not supported")
	case fc.GetTransportSocket() != nil:
		return names, bad, "", fmt.Errorf("a transport_socket would terminate TLS; the gateway never does")
	case len(fc.GetFilters()) != 1:
		return names, bad, "", fmt.Errorf("%d network filters; want exactly one tcp_proxy", len(fc.GetFilters()))
	}
	f := fc.GetFilters()[0]
	cfg := f.GetTypedConfig()
	if cfg == nil || cfg.GetTypeUrl() != tcpProxyTypeURL {
		return names, bad, "", fmt.Errorf("filter %q is not a tcp_proxy with a typed_config", f.GetName())
	}
	var tp tcpproxyv3.TcpProxy
	if err := cfg.UnmarshalTo(&tp); err != nil {
		return names, bad, "", fmt.Errorf("filter %q: %w", f.GetName(), err)
	}
	switch {
	case tp.GetWeightedClusters() != nil:
		return names, bad, "", fmt.Errorf("tcp_proxy weighted_clusters are not supported")
	case tp.GetTunnelingConfig() != nil:
		return names, bad, "", fmt.Errorf("tcp_proxy tunneling_config is not supported")
	case tp.GetCluster() == "":
		return names, bad, "", fmt.Errorf("tcp_proxy names no cluster")
	}
	return names, bad, tp.GetCluster(), nil
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
			if ip.IsUnspecified() {
				return nil, fmt.Errorf("endpoint address %q is not dialable", sa.GetAddress())
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
