// Package workloadtls makes gRPC client credentials from a workload certificate
// directory, the layout the agent writes (--workload-cert-dir): tls.crt (the leaf
// and its intermediate), tls.key and ca.crt (the mesh's trust bundle).
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

// ClientCredentials presents the certificate in dir and verifies the server against
// dir's ca.crt and the name the client dials.
func ClientCredentials(dir string) credentials.TransportCredentials {
	return &reloading{dir: dir}
}

type reloading struct{ dir string }

// Load reads dir's certificate, key and trust bundle.
func Load(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("workload certificate in %s: %w", dir, err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("trust bundle in %s: %w", dir, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("trust bundle %s holds no certificate", filepath.Join(dir, "ca.crt"))
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
