package echo

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

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
	// provider instance reads them, as meshfed's mTLS resources require.
	CertDir string
}

// Bootstrap is the proxy's xDS bootstrap: the agent, the node, the server listener
// template and, with a CertDir, the "meshfed" file_watcher certificate provider.
func (p Proxy) Bootstrap() []byte {
	b := map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": p.XDSServer,
			"channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []string{"xds_v3"}}},
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
func ServeXDS(lis net.Listener, id string, p Proxy) (*xds.GRPCServer, error) {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("echo: xDS server credentials: %w", err)
	}
	s, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(p.Bootstrap()))
	if err != nil {
		return nil, fmt.Errorf("echo: xDS server: %w", err)
	}
	Register(s, id)
	go s.Serve(lis) //nolint:errcheck // returns when stopped
	return s, nil
}
