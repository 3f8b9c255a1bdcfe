package clusteragent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// Authentication modes of the xDS port (Options.XDSAuth).
const (
	// XDSAuthMTLS serves xDS over TLS with a certificate issued from the cluster's
	// intermediate, and requires a client certificate issued by the same intermediate
	// (a workload certificate of this cluster) that chains to the mesh's trust bundle.
	XDSAuthMTLS = "mtls"
	// XDSAuthNone serves plaintext xDS to whoever connects: only on a loopback
	// address, unless Options.XDSInsecureListen.
	XDSAuthNone = "none"
)

// xdsServingLifetime is the lifetime of the xDS serving certificate; it is re-issued
// at two thirds of it, and whenever the intermediate changes.
const xdsServingLifetime = 24 * time.Hour

// agentServiceAccount is the agent's ServiceAccount (deploy/agent): the identity in
// its xDS serving certificate.
const agentServiceAccount = "meshfed-agent"

// DefaultXDSServerNames are the names the xDS serving certificate carries when
// Options.XDSServerNames is empty: the agent's Service in namespace, and loopback.
// Proxies' bootstraps name the server by one of them (server_uri), and grpc-go checks
// the certificate against that host.
func DefaultXDSServerNames(namespace string) []string {
	svc := "meshfed-agent." + namespace
	return []string{svc, svc + ".svc", svc + ".svc.cluster.local", "localhost", "127.0.0.1", "::1"}
}

// xdsTLS is the server side of the xDS port's mTLS. Every replica runs it (the leader
// alone manages the intermediate, in IntermediateSecret): it reads the intermediate
// from the Secret and issues itself a serving certificate from it, here, so that the
// intermediate's key is used only inside the cluster. Until the hub has signed the
// intermediate there is no certificate and every handshake fails: no proxy is served
// unauthenticated, ever.
type xdsTLS struct {
	cluster, namespace string
	kube               kubernetes.Interface
	view               *view.View
	names              []string // DNS names and IPs of the serving certificate
	log                logr.Logger

	cert atomic.Pointer[servingCert]

	mu     sync.Mutex
	bundle string         // the trust bundle pool was made from
	pool   *x509.CertPool // roots client certificates must chain to
}

// servingCert is the xDS serving certificate and the intermediate chain it came from.
type servingCert struct {
	tls   tls.Certificate
	leaf  *x509.Certificate
	chain []byte
}

// config is the xDS server's TLS configuration: every handshake takes the current
// certificate and trust bundle.
func (x *xdsTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			sc := x.cert.Load()
			if sc == nil {
				return nil, errors.New("no xDS serving certificate yet: the hub has not signed this cluster's intermediate")
			}
			roots, err := x.roots()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:            tls.VersionTLS12,
				Certificates:          []tls.Certificate{sc.tls},
				ClientAuth:            tls.RequireAndVerifyClientCert,
				ClientCAs:             roots,
				NextProtos:            []string{"h2"},
				VerifyPeerCertificate: ownCluster(x.cluster),
			}, nil
		},
	}
}

// roots is the mesh's trust bundle as a pool, remade when the bundle changed (a root
// rotation adds and later removes roots).
func (x *xdsTLS) roots() (*x509.CertPool, error) {
	b := x.view.TrustBundle()
	if b == nil {
		return nil, errors.New("no trust bundle in the view: the hub runs without a mesh CA")
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if b.Roots != x.bundle || x.pool == nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(b.Roots)) {
			return nil, errors.New("the trust bundle holds no certificate")
		}
		x.bundle, x.pool = b.Roots, pool
	}
	return x.pool, nil
}

// ownCluster accepts a verified client chain only if the leaf was issued by the
// intermediate of cluster: the hub signs an intermediate with that common name only
// for that cluster (trust.ValidateIntermediateCSR), so a workload of another member
// cluster, whose certificate verifies against the same bundle, is refused.
func ownCluster(cluster string) func([][]byte, [][]*x509.Certificate) error {
	want := trust.IntermediateCommonName(cluster)
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		for _, chain := range chains {
			if len(chain) >= 2 && chain[1].IsCA && chain[1].Subject.CommonName == want {
				return nil
			}
		}
		return fmt.Errorf("xDS client certificate was not issued by cluster %s's intermediate: only this cluster's workloads are served", cluster)
	}
}

// run keeps the serving certificate current until ctx is done: it rereads the
// intermediate when the view says the hub answered this cluster's CSR or the bundle
// changed, every second while it has no certificate, and every 30s after.
func (x *xdsTLS) run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	unsubscribe := x.view.Subscribe(func(k keyspace.Key) {
		if k.Kind == keyspace.KindTrustBundle || (k.Kind == keyspace.KindIntermediate && k.Cluster == x.cluster) {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	for {
		if err := x.refresh(ctx, time.Now()); err != nil {
			x.log.Error(err, "xDS serving certificate")
		}
		every := 30 * time.Second
		if x.cert.Load() == nil {
			every = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(every):
		}
	}
}

// refresh issues a serving certificate when there is none, the intermediate in the
// Secret changed, or the current one is due for renewal.
func (x *xdsTLS) refresh(ctx context.Context, now time.Time) error {
	sec, err := x.kube.CoreV1().Secrets(x.namespace).Get(ctx, IntermediateSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // no mesh CA yet: the leader creates it once the hub publishes a bundle
	}
	if err != nil {
		return fmt.Errorf("read the intermediate: %w", err)
	}
	chain, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(chain) == 0 {
		return nil // the hub has not signed it yet
	}
	cur := x.cert.Load()
	if cur != nil && bytes.Equal(cur.chain, chain) && !trust.NeedsRenewal(cur.leaf, now) {
		return nil
	}
	ic, err := trust.LoadIntermediate(chain, key)
	if err != nil {
		return err
	}
	sc, err := issueServing(ic, x.namespace, x.names, now)
	if err != nil {
		return err
	}
	sc.chain = chain
	x.cert.Store(sc)
	x.log.Info("xDS serving certificate issued", "names", x.names, "notAfter", sc.leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// issueServing issues the xDS serving certificate from the cluster's intermediate: a
// fresh key, the agent's SPIFFE ID and names (DNS names or IPs), for server
// authentication, valid for xdsServingLifetime but never beyond the intermediate.
func issueServing(ic *trust.Intermediate, namespace string, names []string, now time.Time) (*servingCert, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	id, err := url.Parse(trust.ServiceAccountID(ic.TrustDomain, ic.Cluster, namespace, agentServiceAccount))
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		URIs:         []*url.URL{id},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(xdsServingLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotBefore.Before(ic.Cert.NotBefore) {
		tmpl.NotBefore = ic.Cert.NotBefore
	}
	if tmpl.NotAfter.After(ic.Cert.NotAfter) {
		tmpl.NotAfter = ic.Cert.NotAfter
	}
	tmpl.Subject.CommonName = "meshfed-agent xDS " + ic.Cluster
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if !tmpl.NotAfter.After(now) {
		return nil, fmt.Errorf("issue the xDS serving certificate: the intermediate of cluster %s expired at %s", ic.Cluster, ic.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic.Cert, key.Public(), ic.Key)
	if err != nil {
		return nil, fmt.Errorf("issue the xDS serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certs := [][]byte{der, ic.Cert.Raw}
	for _, c := range ic.Chain {
		certs = append(certs, c.Raw)
	}
	return &servingCert{tls: tls.Certificate{Certificate: certs, PrivateKey: key, Leaf: leaf}, leaf: leaf}, nil
}

// isLoopback reports whether addr (host:port) listens only on a loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
