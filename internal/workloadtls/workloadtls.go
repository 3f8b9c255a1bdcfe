// Package workloadtls makes the gRPC client credentials of a proxy of the agent's xDS
// port from a workload certificate directory, the layout the agent writes
// (--workload-cert-dir): tls.crt (the leaf and its intermediate) and tls.key, which
// the client presents, ca.crt (the mesh's trust bundle, not used here) and
// xds-ca.crt (XDSCAFile: the cluster's xDS serving CA), which the agent's serving
// certificate must chain to. The mesh's roots are not trusted for the agent: no
// member cluster's intermediate may sign a certificate the agent's clients accept.
//
// The files are read at every handshake, so a renewal or a root rotation needs no
// restart; handshakes are rare (one per connection), so the reads cost nothing that
// matters. It never falls back to plaintext: missing or unreadable files fail the
// handshake, which gRPC retries.
package workloadtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc/credentials"
)

// XDSCAFile, in a workload certificate directory, holds the certificates of the
// cluster's xDS serving CA: what proxies verify the agent's xDS port against (the
// bootstrap's channel_creds "tls" ca_certificate_file).
const XDSCAFile = "xds-ca.crt"

// ClientCredentials presents the certificate in dir and verifies the server against
// dir's XDSCAFile and the name the client dials.
func ClientCredentials(dir string) credentials.TransportCredentials {
	return &reloading{dir: dir}
}

type reloading struct{ dir string }

// Load reads dir's certificate, key and xDS serving CA.
func Load(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("workload certificate in %s: %w", dir, err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, XDSCAFile))
	if err != nil {
		return nil, fmt.Errorf("xDS serving CA in %s: %w", dir, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("xDS serving CA %s holds no certificate", filepath.Join(dir, XDSCAFile))
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: roots}, nil
}

func (r *reloading) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := Load(r.dir)
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, raw)
}

func (r *reloading) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workloadtls: client credentials only")
}

func (r *reloading) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (r *reloading) Clone() credentials.TransportCredentials { return &reloading{dir: r.dir} }

func (r *reloading) OverrideServerName(string) error {
	return errors.New("workloadtls: the server name is the dialed host")
}
