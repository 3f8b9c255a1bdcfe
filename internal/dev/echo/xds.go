package echo

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

	"github.com/meshfed/meshfed/internal/dev/netlink"
	"github.com/meshfed/meshfed/internal/workloadtls"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// Proxy describes a proxyless gRPC client or server of a cluster's agent.
type Proxy struct {
	// XDSServer is the agent's xDS address.
	XDSServer string
	// NodeID, Region and Zone are the node's.
	NodeID, Region, Zone string
	// CertDir, if set, holds the workload's tls.crt, tls.key and ca.crt (as an
	// agent's --workload-cert-dir does per identity): the "meshfed" certificate
	// provider instance reads them, as meshfed's mTLS resources require. When it also
	// holds xds-ca.crt (the agent's xDS requires mTLS), the proxy speaks to the agent
	// over TLS with that workload certificate.
	CertDir string
}

// channelCreds are the bootstrap's channel_creds: TLS to the agent with the workload
// certificate when CertDir has the cluster's xDS serving CA, else plaintext.
func (p Proxy) channelCreds() []any {
	if p.CertDir == "" {
		return []any{map[string]any{"type": "insecure"}}
	}
	ca := filepath.Join(p.CertDir, workloadtls.XDSCAFile)
	if _, err := os.Stat(ca); err != nil {
		return []any{map[string]any{"type": "insecure"}}
	}
	return []any{map[string]any{"type": "tls", "config": map[string]any{"ca_certificate_file": ca,
		"certificate_file": filepath.Join(p.CertDir, "tls.crt"), "private_key_file": filepath.Join(p.CertDir, "tls.key"),
		"refresh_interval": "1s"}}}
}

// Bootstrap is the proxy's xDS bootstrap: the agent, the node, the server listener
// template and, with a CertDir, the "meshfed" file_watcher certificate provider.
func (p Proxy) Bootstrap() []byte {
	b := map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": p.XDSServer,
			"channel_creds": p.channelCreds(), "server_features": []string{"xds_v3"}}},
		"node":                                   map[string]any{"id": p.NodeID, "locality": map[string]any{"region": p.Region, "zone": p.Zone}},
		"server_listener_resource_name_template": xdsnames.ServerListenerTemplate,
	}
	if p.CertDir != "" {
		b["certificate_providers"] = map[string]any{"meshfed": map[string]any{"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file":    filepath.Join(p.CertDir, "tls.crt"),
				"private_key_file":    filepath.Join(p.CertDir, "tls.key"),
				"ca_certificate_file": filepath.Join(p.CertDir, "ca.crt"),
				"refresh_interval":    "1s",
			}}}
	}
	out, _ := json.Marshal(b) // maps of strings: cannot fail
	return out
}

// ServeXDS serves the echo service, answering with id, on lis as a proxyless gRPC
// xDS server of p's agent: it serves only once the agent sent the Listener of lis's
// address, and with the mTLS that Listener asks for (the agent's DownstreamTlsContext:
// a client certificate from the mesh required, the server's own from p.CertDir);
// without TLS in the Listener it serves plaintext. It returns the server; Stop it.
//
// An agent's serving certificate names loopback, not the host-link address a backend
// in a network namespace reaches it by: with TLS to a non-loopback agent, ServeXDS
// dials it through a relay of its own on the namespace's loopback, so that the name
// the certificate is checked for is one it carries.
func ServeXDS(lis net.Listener, id string, p Proxy) (*xds.GRPCServer, error) {
	return ServeXDSWith(lis, id, p, Behaviour{})
}

// ServeXDSWith is ServeXDS with a server that misbehaves as b says.
func ServeXDSWith(lis net.Listener, id string, p Proxy, b Behaviour) (*xds.GRPCServer, error) {
	if p.channelCreds()[0].(map[string]any)["type"] == "tls" && !isLoopback(p.XDSServer) {
		l, err := netlink.New(p.XDSServer) // for the life of the process
		if err != nil {
			return nil, fmt.Errorf("echo: relay to the agent: %w", err)
		}
		p.XDSServer = l.Addr()
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("echo: xDS server credentials: %w", err)
	}
	s, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(p.Bootstrap()))
	if err != nil {
		return nil, fmt.Errorf("echo: xDS server: %w", err)
	}
	RegisterWith(s, id, b)
	go s.Serve(lis) //nolint:errcheck // returns when stopped
	return s, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && (host == "localhost" || ip != nil && ip.IsLoopback())
}
