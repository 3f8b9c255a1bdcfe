package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshfed/meshfed/internal/workloadtls"
)

// Workload identities the sandbox issues in every cluster when the agents' xDS
// requires mTLS (Options.MTLS): its xDS clients' (tests, meshfedctl dev client) and
// its east-west gateways'.
const (
	XDSClientIdentity = "meshfed-system/dev-client"
	GatewayIdentity   = "meshfed-system/meshfed-gateway"
)

// XDSChannelCreds is the "channel_creds" of a grpc-go xDS bootstrap for the cluster's
// agent: when its xDS requires mTLS, TLS presenting XDSCertDir's certificate and
// verifying the agent against the cluster's xDS serving CA (XDSCAFile), else insecure.
func (c *Cluster) XDSChannelCreds() string {
	if c.XDSCertDir == "" {
		return `[{"type": "insecure"}]`
	}
	// The files are reread every second (grpc-go's default is ten minutes): sandbox
	// certificates may live minutes, and a reconnect must not present an expired one.
	return fmt.Sprintf(`[{"type": "tls", "config": {"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q, "refresh_interval": "1s"}}]`,
		c.XDSCAFile(), filepath.Join(c.XDSCertDir, "tls.crt"), filepath.Join(c.XDSCertDir, "tls.key"))
}

// XDSCAFile is the file of the cluster's xDS serving CA that proxies verify the
// agent's xDS port against ("" when it serves plaintext).
func (c *Cluster) XDSCAFile() string {
	if c.XDSCertDir == "" {
		return ""
	}
	return filepath.Join(c.XDSCertDir, workloadtls.XDSCAFile)
}

// XDSCredentials are the transport credentials of a raw gRPC client of the cluster's
// agent's xDS port, as XDSChannelCreds.
func (c *Cluster) XDSCredentials() credentials.TransportCredentials {
	if c.XDSCertDir == "" {
		return insecure.NewCredentials()
	}
	return workloadtls.ClientCredentials(c.XDSCertDir)
}

// waitXDS waits until the cluster's agent serves xDS over mTLS to XDSCertDir's
// certificate: its intermediate is signed, its serving certificate issued, and the
// client's certificate and the xDS serving CA written. A TLS handshake alone proves it; the health service
// the call then reaches is not served (Unimplemented), which is an answer.
func waitXDS(ctx context.Context, c *Cluster, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if _, err := workloadtls.Load(c.XDSCertDir); err != nil {
			last = err
			return false, nil
		}
		conn, err := grpc.NewClient(c.XDSAddr, grpc.WithTransportCredentials(c.XDSCredentials()))
		if err != nil {
			return false, err
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		if status.Code(err) == codes.Unimplemented {
			return true, nil
		}
		last = err
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s: the agent does not serve xDS over mTLS to %s (%v): %w", c.Name, c.XDSCertDir, last, err)
	}
	return nil
}
