package clusteragent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// Authentication modes of the xDS port (Options.XDSAuth).
const (
	// XDSAuthMTLS serves xDS over TLS with a certificate from the cluster's xDS
	// serving CA (XDSCASecret), and requires a client certificate issued by the
	// cluster's intermediate (a workload certificate of this cluster) that chains to
	// the mesh's trust bundle.
	XDSAuthMTLS = "mtls"
	// XDSAuthNone serves plaintext xDS to whoever connects: only on a loopback
	// address, unless Options.XDSInsecureListen.
	XDSAuthNone = "none"
)

// The cluster's xDS serving CA, in the agent's namespace of the member cluster.
const (
	// XDSCASecret holds the xDS serving CA (tls.crt, tls.key): made by the first
	// replica that finds none, used by every replica to issue its serving
	// certificate. Deleting it rotates the CA.
	XDSCASecret = "meshfed-xds-ca"
	// XDSCAConfigMap publishes the CA's certificate (ca.crt) for the cluster's
	// proxies: the current CA and, for xdsCAOverlap after a rotation, the previous one.
	XDSCAConfigMap = "meshfed-xds-ca"
)

const (
	// xdsCALifetime is the lifetime of the xDS serving CA.
	xdsCALifetime = 10 * 365 * 24 * time.Hour
	// xdsServingLifetime is the lifetime of an xDS serving certificate; it is
	// re-issued at two thirds of it, and when the CA changed.
	xdsServingLifetime = 24 * time.Hour
	// xdsCAAdopt is how long after a new xDS CA was made (the Secret's creation) a
	// replica that has a serving certificate keeps it: the new CA reaches proxies'
	// xds-ca.crt files (the leader rewrites them every 30s at most) before any
	// replica serves a certificate from it.
	xdsCAAdopt = 2 * time.Minute
	// xdsCAOverlap is how long XDSCAConfigMap keeps a replaced CA after its
	// successor was made: the longest a serving certificate from it can still be
	// in use.
	xdsCAOverlap = xdsServingLifetime + time.Hour
)

var (
	xdsServingExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "xds_serving_cert_expiry_timestamp_seconds",
		Help: "When this replica's xDS serving certificate expires, in seconds since the epoch (0: none yet).",
	})
	xdsCAExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "xds_ca_expiry_timestamp_seconds",
		Help: "When the cluster's xDS serving CA this replica issues from expires, in seconds since the epoch.",
	})
	xdsServingIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "xds_serving_certs_issued_total",
		Help: "xDS serving certificates this replica issued itself, by reason (New, Renewal, CARotated).",
	}, []string{"reason"})
)

func registerXDSTLSMetrics(reg prometheus.Registerer) {
	reg.MustRegister(xdsServingExpiry, xdsCAExpiry, xdsServingIssued)
}

// DefaultXDSServerNames are the names the xDS serving certificate carries when
// Options.XDSServerNames is empty: the agent's Service in namespace, and loopback.
// Proxies' bootstraps name the server by one of them (server_uri), and grpc-go checks
// the certificate against that host.
func DefaultXDSServerNames(namespace string) []string {
	svc := "meshfed-agent." + namespace
	return []string{svc, svc + ".svc", svc + ".svc.cluster.local", "localhost", "127.0.0.1", "::1"}
}

// xdsTLS is the server side of the xDS port's mTLS, run by every replica.
//
// The serving certificate does not chain to the mesh root: a cluster's intermediate
// may sign only its cluster's SPIFFE IDs, no DNS name or IP (trust's name
// constraints), and no member's intermediate must be able to impersonate an agent.
// It comes from the cluster's own xDS serving CA, which lives only in the member
// cluster (XDSCASecret) and which only the cluster's proxies trust (XDSCAConfigMap,
// and xds-ca.crt next to every workload certificate). Client certificates are
// checked against the mesh's trust bundle and must come from this cluster's
// intermediate.
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

// servingCert is the xDS serving certificate and the CA that issued it.
type servingCert struct {
	tls  tls.Certificate
	leaf *x509.Certificate
	ca   []byte // the CA's certificate, PEM
}

// config is the xDS server's TLS configuration: every handshake takes the current
// certificate and trust bundle.
func (x *xdsTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			sc := x.cert.Load()
			if sc == nil {
				return nil, fmt.Errorf("no xDS serving certificate yet: no xDS serving CA in %s/%s", x.namespace, XDSCASecret)
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

// run keeps the serving certificate current until ctx is done: it rereads the CA
// every second while it has no certificate, and every 30s after.
func (x *xdsTLS) run(ctx context.Context) error {
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
		case <-time.After(every):
		}
	}
}

// refresh makes sure the xDS CA exists and is published, and issues a serving
// certificate when there is none, the current one is due for renewal, or the CA
// changed (once the new CA is xdsCAAdopt old, while the current one is valid).
func (x *xdsTLS) refresh(ctx context.Context, now time.Time) error {
	ca, created, err := x.loadCA(ctx, now)
	if err != nil {
		return err
	}
	xdsCAExpiry.Set(float64(ca.Cert.NotAfter.Unix()))
	if err := x.publishCA(ctx, ca.Cert, now); err != nil {
		return fmt.Errorf("publish the xDS serving CA in ConfigMap %s/%s: %w", x.namespace, XDSCAConfigMap, err)
	}
	cur := x.cert.Load()
	reason := "New"
	switch {
	case cur == nil:
	case !bytes.Equal(cur.ca, ca.CertPEM):
		if now.Before(created.Add(xdsCAAdopt)) && now.Before(cur.leaf.NotAfter) {
			return nil // the new CA is on its way to the proxies
		}
		reason = "CARotated"
	case trust.NeedsRenewal(cur.leaf, now):
		reason = "Renewal"
	default:
		return nil
	}
	sc, err := issueServing(ca, x.cluster, x.names)
	if err != nil {
		return err
	}
	x.cert.Store(sc)
	xdsServingExpiry.Set(float64(sc.leaf.NotAfter.Unix()))
	xdsServingIssued.WithLabelValues(reason).Inc()
	x.log.Info("xDS serving certificate issued", "reason", reason, "names", x.names,
		"notAfter", sc.leaf.NotAfter.UTC().Format(time.RFC3339), "ca", Digest(ca.Cert.Raw)[:16])
	return nil
}

// loadCA reads the cluster's xDS serving CA and when it was made, making it if there
// is none: of replicas that race to make it, the one whose create fails reads the
// winner's.
func (x *xdsTLS) loadCA(ctx context.Context, now time.Time) (*pki.CA, time.Time, error) {
	secrets := x.kube.CoreV1().Secrets(x.namespace)
	sec, err := secrets.Get(ctx, XDSCASecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		sec, err = newXDSCASecret(x.namespace, x.cluster)
		if err != nil {
			return nil, time.Time{}, err
		}
		created, cerr := secrets.Create(ctx, sec, metav1.CreateOptions{})
		switch {
		case cerr == nil:
			sec = created
			x.log.Info("xDS serving CA made", "secret", XDSCASecret)
		case apierrors.IsAlreadyExists(cerr):
			sec, err = secrets.Get(ctx, XDSCASecret, metav1.GetOptions{})
		default:
			err = cerr
		}
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("xDS serving CA in Secret %s/%s: %w", x.namespace, XDSCASecret, err)
	}
	ca, err := pki.LoadCA(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("xDS serving CA in Secret %s/%s: %w (delete the Secret: the agent makes a new CA)", x.namespace, XDSCASecret, err)
	}
	if !now.Before(ca.Cert.NotAfter) {
		return nil, time.Time{}, fmt.Errorf("the xDS serving CA in Secret %s/%s expired at %s: delete the Secret, the agent makes a new CA",
			x.namespace, XDSCASecret, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ca, sec.CreationTimestamp.Time, nil
}

// newXDSCASecret makes a new xDS serving CA for cluster, in its Secret.
func newXDSCASecret(namespace, cluster string) (*corev1.Secret, error) {
	ca, err := pki.NewCA("meshfed xds "+cluster, xdsCALifetime)
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: XDSCASecret, Namespace: namespace}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: ca.CertPEM, corev1.TLSPrivateKeyKey: keyPEM}}, nil
}

// publishCA writes XDSCAConfigMap: the current CA first, then any other CA it holds
// that has not expired, while the later of the two was made less than xdsCAOverlap
// ago (a replica that has not yet seen a new CA does not drop it).
func (x *xdsTLS) publishCA(ctx context.Context, current *x509.Certificate, now time.Time) error {
	cms := x.kube.CoreV1().ConfigMaps(x.namespace)
	cm, err := cms.Get(ctx, XDSCAConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: XDSCAConfigMap, Namespace: x.namespace}}, nil
	}
	if err != nil {
		return err
	}
	want := pki.EncodeCert(current.Raw)
	held, _ := trust.ParseCertificates([]byte(cm.Data["ca.crt"])) // unreadable: replaced by the current CA alone
	for _, c := range held {
		later := current.NotBefore
		if c.NotBefore.After(later) {
			later = c.NotBefore
		}
		if !c.Equal(current) && now.Before(c.NotAfter) && now.Before(later.Add(xdsCAOverlap)) {
			want = append(want, pki.EncodeCert(c.Raw)...)
		}
	}
	if cm.Data["ca.crt"] == string(want) && cm.ResourceVersion != "" {
		return nil
	}
	cm.Data = map[string]string{"ca.crt": string(want)}
	if cm.ResourceVersion == "" {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		return nil // another replica wrote it; the next refresh checks it again
	}
	return err
}

// issueServing issues an xDS serving certificate from the xDS CA: a fresh key and the
// names proxies dial (DNS names or IPs), for server authentication only, valid for
// xdsServingLifetime but never beyond the CA (loadCA refuses an expired one).
func issueServing(ca *pki.CA, cluster string, names []string) (*servingCert, error) {
	tmpl := pki.ServerTemplate("meshfed-agent xDS "+cluster, names...)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	certPEM, keyPEM, err := ca.Issue(tmpl, xdsServingLifetime)
	if err != nil {
		return nil, fmt.Errorf("issue the xDS serving certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &servingCert{tls: pair, leaf: pair.Leaf, ca: ca.CertPEM}, nil
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
