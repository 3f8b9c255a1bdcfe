package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DialOptions are the gRPC options of every meshfed etcd client. gRPC's default
// reconnect backoff grows to 120s (1s × 1.6ⁿ): after a hub outage of 20s the
// next attempt came up to 17s after etcd was back, by which time an agent's
// lease had lapsed and other clusters had demoted it. Reconnecting at least
// every second costs one dial per second per client while etcd is down, and
// brings leases, writes and watches back within about a second of etcd.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		// Bounds one attempt, so that a dial stuck on a black-holed address
		// does not hold up the next one for gRPC's default 20s.
		MinConnectTimeout: 5 * time.Second,
	})}
}

// Credentials are an etcd client's endpoints and PEM TLS material.
type Credentials struct {
	Endpoints []string
	CA        []byte // CA of etcd's serving certificate
	Cert      []byte // client certificate; its common name is the etcd user
	Key       []byte
}

// TLS is the client TLS configuration of c.
func (c Credentials) TLS() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CA) {
		return nil, errors.New("etcd credentials: no CA certificate in PEM")
	}
	cert, err := tls.X509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd credentials: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// New opens a client. It does not wait for a connection: the client connects, and
// reconnects, in the background, so a process starts while etcd is down.
func New(ctx context.Context, c Credentials) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd credentials: no endpoints")
	}
	tlsConfig, err := c.TLS()
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		TLS:                  tlsConfig,
		Context:              ctx,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          DialOptions(),
		// The client's own reconnect chatter is noise: callers log what matters.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.Endpoints, err)
	}
	return client, nil
}
