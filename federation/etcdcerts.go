package federation

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/federation/internal/signer"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/trust"
)

// DefaultEtcdCertLifetime is the life of the embedded etcd's serving certificate and
// of the hub's own etcd client certificate; the hub renews both at two thirds of it.
const DefaultEtcdCertLifetime = 365 * 24 * time.Hour

// Lifetimes of agents' etcd client certificates (Options.AgentCertLifetime).
const (
	DefaultAgentCertLifetime = signer.DefaultLifetime
	MaxAgentCertLifetime     = signer.MaxLifetime
)

// Names of the embedded etcd's serving certificate files in the hub's pki directory.
const (
	etcdServerCertFile = "etcd-server.crt"
	etcdServerKeyFile  = "etcd-server.key"
)

var hubEtcdCertExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "meshfed", Subsystem: "hub", Name: "etcd_cert_expiry_timestamp_seconds",
	Help: "When the hub's own etcd certificates expire (cert: server, client), in seconds since the epoch.",
}, []string{"cert"})

// hubCerts renews the embedded etcd's certificates while the hub runs, each at two
// thirds of its life: the serving certificate by rewriting its files (etcd reads them
// at every TLS handshake, so new connections get the new certificate and open ones
// stay), and the hub's root client certificate through its KeyPair (read at every
// handshake of the hub's client). Each replica renews its own; it needs no leader.
type hubCerts struct {
	ca       *pki.CA
	dir      string   // holds etcdServerCertFile and etcdServerKeyFile
	hosts    []string // names of the serving certificate
	lifetime time.Duration
	client   *etcdconn.KeyPair
	clock    clock.WithTicker
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (h *hubCerts) NeedLeaderElection() bool { return false }

// issueServer writes a new serving certificate and key. The key goes first: a
// handshake that reads the files while they change fails once and is retried by the
// client, and never finds a certificate without its key for long.
func (h *hubCerts) issueServer() (time.Time, error) {
	certPEM, keyPEM, err := h.ca.Issue(pki.ServerTemplate("meshfed-hub-etcd", h.hosts...), h.lifetime)
	if err != nil {
		return time.Time{}, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{etcdServerKeyFile, keyPEM}, {etcdServerCertFile, certPEM}} {
		tmp := filepath.Join(h.dir, "."+f.name)
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return time.Time{}, fmt.Errorf("renew etcd serving certificate: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(h.dir, f.name)); err != nil {
			return time.Time{}, fmt.Errorf("renew etcd serving certificate: %w", err)
		}
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	hubEtcdCertExpiry.WithLabelValues("server").Set(float64(cert.NotAfter.Unix()))
	return cert.NotAfter, nil
}

// issueClient makes the hub's new root client certificate.
func (h *hubCerts) issueClient() (certPEM, keyPEM []byte, err error) {
	return h.ca.Issue(pki.ClientTemplate(etcdsec.RootUser), h.lifetime)
}

// Start implements manager.Runnable: it renews until ctx is done.
func (h *hubCerts) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("etcd-certs")
	hubEtcdCertExpiry.WithLabelValues("client").Set(float64(h.client.Leaf().NotAfter.Unix()))
	tick := h.clock.NewTicker(h.poll())
	defer tick.Stop()
	for {
		now := h.clock.Now()
		server, err := h.serverCert()
		if err != nil || trust.NeedsRenewal(server, now) {
			notAfter, err := h.issueServer()
			if err != nil {
				log.Error(err, "renew etcd serving certificate")
			} else {
				log.Info("renewed etcd serving certificate", "notAfter", notAfter.UTC())
			}
		}
		if trust.NeedsRenewal(h.client.Leaf(), now) {
			certPEM, keyPEM, err := h.issueClient()
			if err == nil {
				err = h.client.Set(certPEM, keyPEM)
			}
			if err != nil {
				log.Error(err, "renew the hub's etcd client certificate")
			} else {
				hubEtcdCertExpiry.WithLabelValues("client").Set(float64(h.client.Leaf().NotAfter.Unix()))
				log.Info("renewed the hub's etcd client certificate", "notAfter", h.client.Leaf().NotAfter.UTC())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
	}
}

// poll is how often the certificates are looked at: often enough for short test
// lifetimes, at most once a minute.
func (h *hubCerts) poll() time.Duration { return min(max(h.lifetime/30, time.Second), time.Minute) }

func (h *hubCerts) serverCert() (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(h.dir, etcdServerCertFile))
	if err != nil {
		return nil, err
	}
	return pki.ParseCert(data)
}

// runGuard runs the embedded etcd's Guard until the returned function is called; that
// function waits for it to stop.
func runGuard(g *etcdsec.Guard, server *embedetcd.Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx, server)
	}()
	return func() {
		cancel()
		<-done
	}
}
