package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
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

// MaxRecvMsgBytes bounds one message a meshfed etcd client accepts (a list page, a
// watch fragment): the etcd client's own default is 2 GiB. A member's value is at
// most its MaxValueBytes (1 MiB by default) and etcd refuses requests over 1.5 MiB,
// so 16 MiB leaves room for pages of many values, and the readers split a page that
// does not fit (kvstore.ReaderOptions.PageSize) and watch with fragments.
const MaxRecvMsgBytes = 16 << 20

// Credentials are an etcd client's endpoints and PEM TLS material.
type Credentials struct {
	Endpoints []string
	CA        []byte // CA of etcd's serving certificate
	Cert      []byte // client certificate; its common name is the etcd user
	Key       []byte
}

// TLS is the client TLS configuration of c, with a fixed certificate.
func (c Credentials) TLS() (*tls.Config, error) {
	pair, err := NewKeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, err
	}
	return clientTLS(c.CA, pair)
}

func clientTLS(caPEM []byte, pair *KeyPair) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("etcd credentials: no CA certificate in PEM")
	}
	return &tls.Config{
		RootCAs: pool, MinVersion: tls.VersionTLS12,
		// Read at each handshake, so that a renewed certificate needs no new client.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.current.Load(), nil },
	}, nil
}

// KeyPair is a client certificate and its key that may be replaced while clients
// use it. Safe for concurrent use.
type KeyPair struct {
	user    string
	current atomic.Pointer[tls.Certificate] // Leaf is set
}

// NewKeyPair parses a PEM certificate and its PEM key.
func NewKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	p := &KeyPair{user: cert.Leaf.Subject.CommonName}
	p.current.Store(cert)
	return p, nil
}

// Set replaces the certificate for every later handshake. It refuses a pair that
// does not parse or match, or whose common name (the etcd user) differs.
func (p *KeyPair) Set(certPEM, keyPEM []byte) error {
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if cn := cert.Leaf.Subject.CommonName; cn != p.user {
		return fmt.Errorf("etcd credentials: new certificate is for user %q, not %q", cn, p.user)
	}
	p.current.Store(cert)
	return nil
}

// Leaf is the current certificate.
func (p *KeyPair) Leaf() *x509.Certificate { return p.current.Load().Leaf }

// User is the etcd user: the certificate's common name.
func (p *KeyPair) User() string { return p.user }

func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("etcd credentials: %w", err)
	}
	if cert.Leaf == nil { // set by Go ≥1.23 unless GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("etcd credentials: %w", err)
		}
	}
	return &cert, nil
}

// New opens a client with a fixed certificate. It does not wait for a connection:
// the client connects, and reconnects, in the background, so a process starts while
// etcd is down.
func New(ctx context.Context, c Credentials) (*clientv3.Client, error) {
	pair, err := NewKeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, c.Endpoints, c.CA, pair)
}

// Dial opens a client like New whose certificate is pair's at every handshake:
// pair.Set renews it without a new client.
func Dial(ctx context.Context, endpoints []string, caPEM []byte, pair *KeyPair) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd credentials: no endpoints")
	}
	tlsConfig, err := clientTLS(caPEM, pair)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConfig,
		Context:              ctx,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          DialOptions(),
		MaxCallRecvMsgSize:   MaxRecvMsgBytes,
		// The client's own reconnect chatter is noise: callers log what matters.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return client, nil
}
