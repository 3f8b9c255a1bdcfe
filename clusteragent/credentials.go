package clusteragent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// credentialsPoll is how often every replica rereads the credentials Secret (the
// leader renews it), and the longest the leader waits before looking at its
// certificate again.
const credentialsPoll = 10 * time.Second

var (
	etcdCertExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "etcd_client_cert_expiry_timestamp_seconds",
		Help: "When the etcd client certificate this agent uses expires, in seconds since the epoch.",
	})
	etcdCertRenewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "etcd_client_cert_renewals_total",
		Help: "Renewals of this agent's etcd client certificate, by result (Requested, Renewed, Failed).",
	}, []string{"result"})
)

func registerCredentialsMetrics(reg prometheus.Registerer) {
	reg.MustRegister(etcdCertExpiry, etcdCertRenewals)
}

// credentials keeps the agent's etcd client certificate current without a restart:
// every replica follows the credentials Secret (reload), and the leader renews the
// certificate at two thirds of its life through the hub (renew): it makes a new key
// here, writes only a CSR to its own etcd prefix, and stores the hub's answer with the
// key in the Secret. The etcd client reads the KeyPair at every handshake, so open
// connections and watches are never cut for a renewal.
type credentials struct {
	cluster, namespace string
	kube               kubernetes.Interface
	pair               *etcdconn.KeyPair
	etcd               interface {
		Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
	}
	view  *view.View
	clock clock.WithTicker
	log   logr.Logger

	// The leader's renewal in flight: the key made here and the CSR sent for it.
	pendingCSR, pendingKey []byte
	sent                   bool
}

// errRegisteredAgain ends the agent when its cluster was registered again.
var errRegisteredAgain = errors.New("cluster registered again")

// reload follows the Secret until ctx is done: a certificate the leader stored there
// (this replica or another) replaces the one in use. Renewals keep the etcd user (the
// registration); a Secret with another user's certificate means the cluster was
// registered again, and reload returns errRegisteredAgain so that the agent restarts
// with it.
func (c *credentials) reload(ctx context.Context) error {
	etcdCertExpiry.Set(float64(c.pair.Leaf().NotAfter.Unix()))
	tick := c.clock.NewTicker(credentialsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
		creds, err := agentcreds.Load(ctx, c.kube, c.namespace)
		if err != nil {
			c.log.Error(err, "reread etcd credentials")
			continue
		}
		if user := creds.User(); user != c.pair.User() {
			// Registered again: the open connections authenticate as the earlier
			// registration's user, which etcd now refuses, and a TLS connection
			// cannot change its certificate. Restart to connect as the new one.
			return fmt.Errorf("%w: the credentials Secret is for etcd user %q, this process connects as %q: restarting to use them",
				errRegisteredAgain, user, c.pair.User())
		}
		if err := c.use(creds.Etcd.Cert, creds.Etcd.Key); err != nil {
			c.log.Error(err, "etcd credentials in the Secret not used")
		}
	}
}

// use makes certPEM and keyPEM the pair of every later handshake, if they are new.
func (c *credentials) use(certPEM, keyPEM []byte) error {
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return err
	}
	if cert.Equal(c.pair.Leaf()) {
		return nil
	}
	if err := c.pair.Set(certPEM, keyPEM); err != nil {
		return err
	}
	etcdCertExpiry.Set(float64(cert.NotAfter.Unix()))
	c.log.Info("etcd client certificate reloaded", "notAfter", cert.NotAfter.UTC(), "serial", cert.SerialNumber.Text(16))
	return nil
}

// renew runs on the leader until ctx is done.
func (c *credentials) renew(ctx context.Context) {
	wake := make(chan struct{}, 1)
	unsubscribe := c.view.Subscribe(func(k keyspace.Key) {
		if k.Cluster == c.cluster && (k.Kind == keyspace.KindEtcdCert || k.Kind == keyspace.KindClusterInfo) {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	// A CSR of a previous term may have been answered for a key this process
	// never had: start afresh.
	c.pendingCSR, c.pendingKey, c.sent = nil, nil, false
	for {
		next := c.step(ctx)
		t := c.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C():
		}
	}
}

// step does what the certificate needs now and says when to look again.
func (c *credentials) step(ctx context.Context) time.Duration {
	cur := c.pair.Leaf()
	cl, _ := c.view.Cluster(c.cluster)
	now := c.clock.Now()
	if c.pendingCSR != nil && cl.EtcdCert != nil && cl.EtcdCert.CSRDigest == model.CSRDigest(string(c.pendingCSR)) {
		// The hub answered: store first, so that a crash right after leaves the
		// Secret and the connection agreeing on the next start.
		certPEM := []byte(cl.EtcdCert.Cert)
		err := agentcreds.StoreCertificate(ctx, c.kube, c.namespace, certPEM, c.pendingKey)
		if err == nil {
			err = c.use(certPEM, c.pendingKey)
		}
		if err != nil {
			etcdCertRenewals.WithLabelValues("Failed").Inc()
			c.log.Error(err, "renewed etcd client certificate not stored; will retry")
			return credentialsPoll
		}
		etcdCertRenewals.WithLabelValues("Renewed").Inc()
		c.log.Info("etcd client certificate renewed", "notAfter", cl.EtcdCert.NotAfter)
		c.pendingCSR, c.pendingKey, c.sent = nil, nil, false
		cur = c.pair.Leaf()
	}
	if c.pendingCSR == nil {
		due, why := renewalDue(cur, cl.EtcdCert, c.view.HasSynced(), now)
		if !due {
			return min(max(trust.RenewAt(cur).Sub(now), time.Second), credentialsPoll)
		}
		csr, key, err := pki.NewCSR(c.pair.User())
		if err != nil {
			c.log.Error(err, "etcd client certificate renewal")
			return credentialsPoll
		}
		c.pendingCSR, c.pendingKey, c.sent = csr, key, false
		c.log.Info("renewing etcd client certificate", "why", why, "notAfter", cur.NotAfter.UTC())
	}
	if !c.sent {
		val, err := model.Encode(&model.EtcdCSR{CSR: string(c.pendingCSR)})
		if err == nil {
			_, err = c.etcd.Put(ctx, keyspace.ClusterEtcdCSR(c.cluster), string(val))
		}
		if err != nil {
			etcdCertRenewals.WithLabelValues("Failed").Inc()
			c.log.Error(err, "send etcd client certificate CSR; will retry")
			return credentialsPoll
		}
		c.sent = true
		etcdCertRenewals.WithLabelValues("Requested").Inc()
	}
	return credentialsPoll // the answer wakes us; the poll is a backstop
}

// renewalDue reports whether the certificate in use should be renewed now, and why:
// two thirds of its life have passed (trust.RenewAt, the rule of every meshfed
// certificate), or, once the view is synced, the hub's record of this cluster's
// certificate (model.EtcdCert) is not the one in use (the first start after
// registration, or an answer that was never stored), so that the hub's record, the
// MeshCluster's CredentialsValid condition and its expiry describe the certificate
// the agent really holds.
func renewalDue(cur *x509.Certificate, rec *model.EtcdCert, synced bool, now time.Time) (bool, string) {
	if trust.NeedsRenewal(cur, now) {
		return true, "two thirds of its life have passed"
	}
	if !synced {
		return false, ""
	}
	if rec == nil {
		return true, "the hub has no record of it"
	}
	recorded, err := pki.ParseCert([]byte(rec.Cert))
	if err != nil || !bytes.Equal(recorded.Raw, cur.Raw) {
		return true, "the hub's record is of another certificate"
	}
	return false, ""
}
