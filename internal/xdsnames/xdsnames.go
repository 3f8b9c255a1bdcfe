package xdsnames

import (
	"strconv"
	"strings"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// GatewayListener is the xDS Listener a meshfed east-west gateway asks its cluster's
// agent for: filter chains matching server names (SNI), each passing the stream to a
// cluster of local endpoints (tcp_proxy). FromXDS reads it.
const GatewayListener = "meshfed-eastwest"

// AgentXDSPort is where a cluster's agent serves xDS (ADS) to its proxies and its
// east-west gateway.
const AgentXDSPort = "15010"

// ServerListenerTemplate is the bootstrap's server_listener_resource_name_template
// of a proxyless gRPC server: it asks its cluster's agent for the Listener
// grpc/server?xds.resource.listening_address=<ip:port> of the address it listens on.
const ServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// GatewayPort is where east-west gateways listen (Istio's convention).
const GatewayPort = v1.DefaultGatewayPort

// SNI is the TLS server name a client uses to reach port of hostname through an
// east-west gateway: Istio's outbound_.<port>_._.<hostname>, so that an Envoy
// gateway could serve the same configuration.
func SNI(hostname string, port uint32) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_._." + strings.ToLower(hostname)
}

// ParseSNI returns the hostname and port of a server name that SNI built (Istio's
// outbound_.<port>_.<subset>_.<hostname>, any subset); ok is false for any other name.
func ParseSNI(sni string) (hostname string, port uint32, ok bool) {
	rest, ok := strings.CutPrefix(sni, "outbound_.")
	if !ok {
		return "", 0, false
	}
	p, rest, ok := strings.Cut(rest, "_.")
	if !ok {
		return "", 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, false
	}
	_, hostname, ok = strings.Cut(rest, "_.") // the subset, "" in meshfed's names
	if !ok || hostname == "" {
		return "", 0, false
	}
	return hostname, uint32(n), true
}
