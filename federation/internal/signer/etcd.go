package signer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// ErrRefused is wrapped by every reason ValidateEtcdCSR refuses a CSR.
var ErrRefused = errors.New("etcd CSR refused")

// etcdRefresh is how often pending renewals are looked at again without a change in
// etcd, and how long a refused CSR stays refused (the hub's rules may have changed).
const etcdRefresh = 30 * time.Second

var renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "meshfed", Subsystem: "hub", Name: "etcd_cert_renewals_total",
	Help: "Agents' etcd client certificate renewals found in etcd, by result (Signed, Refused, Failed).",
}, []string{"result"})

// ValidateEtcdCSR checks an agent's renewal CSR against what the hub authorized for
// cluster: a PEM CSR whose signature verifies, whose common name is the etcd user of
// the cluster's current registration (never an earlier registration's, never another
// cluster's, never root), and that asks for nothing else. A renewal keeps the
// registration: only registering again makes a new one.
func ValidateEtcdCSR(csrPEM []byte, cluster, registration string) (*x509.CertificateRequest, error) {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %w", ErrRefused, err)
	}
	if want := hubinfo.EtcdUser(cluster, registration); csr.Subject.CommonName != want {
		if c, _, ok := hubinfo.ParseEtcdUser(csr.Subject.CommonName); ok && c == cluster {
			return nil, fmt.Errorf("%w: common name %q is of an earlier registration of cluster %q, whose etcd user is now %q",
				ErrRefused, csr.Subject.CommonName, cluster, want)
		}
		return nil, fmt.Errorf("%w: common name %q is not cluster %q's etcd user %q", ErrRefused, csr.Subject.CommonName, cluster, want)
	}
	if !onlyCommonName(csr) {
		return nil, fmt.Errorf("%w: %s", ErrRefused, errOnlyCommonName)
	}
	return csr, nil
}

// SignEtcdCSR signs a CSR ValidateEtcdCSR accepted: a client-only certificate
// (never a CA, never a server) for the CSR's key and common name, living lifetime
// (at most MaxLifetime, and never past the CA).
func SignEtcdCSR(ca *pki.CA, csr *x509.CertificateRequest, lifetime time.Duration) ([]byte, error) {
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	return ca.SignCSR(csr, pki.ClientTemplate(csr.Subject.CommonName), min(lifetime, MaxLifetime))
}

// KV is the part of the etcd client EtcdRenewals writes with.
type KV interface {
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
}

// EtcdRenewals renews agents' etcd client certificates through etcd: it signs every
// registered cluster's renewal CSR (keyspace.ClusterEtcdCSR, which only that
// cluster's etcd user may write) that has no answer yet, and writes the answer to
// keyspace.ClusterEtcdCert. The key stays in the member cluster; the certificate
// keeps the etcd user of the cluster's registration (model.ClusterInfo.Registration)
// as its common name. One hub replica runs it.
type EtcdRenewals struct {
	KV   KV
	View *view.View
	// CA is the CA etcd trusts for client certificates.
	CA *pki.CA
	// Lifetime of the certificates; 0: DefaultLifetime; at most MaxLifetime.
	Lifetime time.Duration
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (r *EtcdRenewals) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: it signs until ctx is done.
func (r *EtcdRenewals) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("etcd-renewals")
	wake := make(chan struct{}, 1)
	unsubscribe := r.View.Subscribe(func(k keyspace.Key) {
		if k.Kind == keyspace.KindEtcdCSR || k.Kind == keyspace.KindClusterInfo {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	refused := map[string]string{} // cluster -> digest of a CSR refused
	tick := time.NewTicker(etcdRefresh)
	defer tick.Stop()
	for {
		if r.View.HasSynced() {
			r.signPending(ctx, refused, log)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
			clear(refused)
		}
	}
}

// signPending signs every registered cluster's CSR that has no answer yet.
func (r *EtcdRenewals) signPending(ctx context.Context, refused map[string]string, log logr.Logger) {
	for _, cl := range r.View.Clusters() {
		req := cl.EtcdCSR
		if req == nil || cl.Info == nil {
			continue // no request, or not a registered cluster
		}
		digest := model.CSRDigest(req.CSR)
		if (cl.EtcdCert != nil && cl.EtcdCert.CSRDigest == digest) || refused[cl.Name] == digest {
			continue
		}
		csr, err := ValidateEtcdCSR([]byte(req.CSR), cl.Name, cl.Info.Registration)
		if err != nil {
			refused[cl.Name] = digest
			renewals.WithLabelValues("Refused").Inc()
			log.Error(err, "etcd certificate renewal refused", "cluster", cl.Name)
			continue
		}
		certPEM, err := SignEtcdCSR(r.CA, csr, r.Lifetime)
		if err != nil {
			renewals.WithLabelValues("Failed").Inc()
			log.Error(err, "etcd certificate renewal not signed", "cluster", cl.Name)
			continue
		}
		cert, err := pki.ParseCert(certPEM)
		if err != nil {
			renewals.WithLabelValues("Failed").Inc()
			log.Error(err, "signed etcd certificate does not parse", "cluster", cl.Name)
			continue
		}
		val, err := model.Encode(&model.EtcdCert{Cert: string(certPEM), NotAfter: cert.NotAfter.UTC(), CSRDigest: digest})
		if err == nil {
			_, err = r.KV.Put(ctx, keyspace.ClusterEtcdCert(cl.Name), string(val))
		}
		if err != nil {
			// Not refused: the next wake or tick tries again.
			renewals.WithLabelValues("Failed").Inc()
			log.Error(err, "store renewed etcd certificate", "cluster", cl.Name)
			continue
		}
		renewals.WithLabelValues("Signed").Inc()
		log.Info("renewed cluster's etcd certificate", "cluster", cl.Name, "user", csr.Subject.CommonName, "notAfter", cert.NotAfter.UTC())
	}
}
