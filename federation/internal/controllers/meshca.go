package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/certmanager"
	"github.com/meshfed/meshfed/trust/meshca"
)

// meshCAPoll is how often the hub re-reads its roots: a root added, switched to or
// retired by a rotation (`meshfedctl trust rotate`) reaches the bundle in etcd, and
// intermediates under a root that no longer signs are re-signed, within it. Two reads
// of the hub's API server, and no etcd write unless something changed.
const meshCAPoll = 5 * time.Second

// meshCARetryRefused is how often refused CSRs are looked at again.
const meshCARetryRefused = time.Minute

// MeshCA runs the mesh's CA on the hub: cert-manager's controllers in-process with
// the root as a CA ClusterIssuer (package trust/meshca), the trust bundle published in
// etcd, and every cluster's intermediate-CA CSR from etcd signed through a
// cert-manager CertificateRequest, the answer written back to etcd. Keys never pass
// through the hub: agents send CSRs. One hub replica runs it (leader election).
type MeshCA struct {
	Config      *rest.Config
	KV          KV
	View        *view.View
	TrustDomain string
	// Lifetime of intermediates; 0: trust.DefaultIntermediateLifetime.
	Lifetime time.Duration
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (m *MeshCA) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (m *MeshCA) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("meshca")
	if _, err := certmanager.Run(ctx, m.Config, certmanager.Options{}); err != nil {
		return fmt.Errorf("mesh CA: %w", err)
	}
	client, err := meshca.NewClient(m.Config)
	if err != nil {
		return err
	}
	if _, err := meshca.EnsureRoot(ctx, client, meshca.RootOptions{TrustDomain: m.TrustDomain}); err != nil {
		return fmt.Errorf("mesh CA: %w", err)
	}
	log.Info("mesh root ready", "trustDomain", m.TrustDomain)
	wake := make(chan struct{}, 1)
	unsubscribe := m.View.Subscribe(func(k keyspace.Key) {
		if k.Kind == keyspace.KindIntermediateCSR {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	refused := map[string]string{} // cluster -> digest of a CSR refused for good
	poll := time.NewTicker(meshCAPoll)
	defer poll.Stop()
	retryRefused := time.NewTicker(meshCARetryRefused)
	defer retryRefused.Stop()
	for {
		signing, err := m.publishBundle(ctx, client)
		if err != nil {
			log.Error(err, "publish trust bundle")
		}
		m.signPending(ctx, client, signing, refused, log)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		case <-retryRefused.C:
			clear(refused)
		}
	}
}

// publishBundle writes the bundle of the active roots to etcd (only when it changed)
// and returns the root that signs now, nil if none does.
func (m *MeshCA) publishBundle(ctx context.Context, c *meshca.Client) (*x509.Certificate, error) {
	roots, err := meshca.Roots(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("bundle: %w", meshca.ErrNoRoot)
	}
	var signing *x509.Certificate
	for _, r := range roots {
		if r.Signing {
			signing = r.Cert
		}
	}
	rec := &model.TrustBundle{TrustDomain: m.TrustDomain, Roots: string(meshca.BundleOf(roots))}
	return signing, putRecord(ctx, m.KV, keyspace.TrustBundle(), rec)
}

// signPending signs every cluster's CSR that has no answer yet, and re-signs the CSR
// last answered when its answer chains to a root that no longer signs: that is how a
// rotation moves every cluster's intermediate to the new root without the agents
// having to notice first (they replace their chain, same key, when the answer
// changes, and re-issue their workloads' certificates from it).
func (m *MeshCA) signPending(ctx context.Context, c *meshca.Client, signing *x509.Certificate, refused map[string]string, log logr.Logger) {
	for _, cl := range m.View.Clusters() {
		req := cl.IntermediateCSR
		if req == nil || cl.Info == nil {
			continue // no request, or not a registered cluster
		}
		digest := model.CSRDigest(req.CSR)
		if refused[cl.Name] == digest {
			continue
		}
		if cl.Intermediate != nil && cl.Intermediate.CSRDigest == digest && !underOtherRoot(cl.Intermediate.Chain, signing) {
			continue
		}
		chain, err := meshca.SignIntermediate(ctx, c, cl.Name, []byte(req.CSR), m.Lifetime)
		if err != nil {
			if errors.Is(err, trust.ErrInvalid) || errors.Is(err, trust.ErrWrongCluster) || errors.Is(err, trust.ErrTrustDomainMismatch) {
				refused[cl.Name] = digest
			}
			log.Error(err, "intermediate CSR not signed", "cluster", cl.Name)
			continue
		}
		cert, err := pki.ParseCert(chain)
		if err != nil {
			log.Error(err, "signed intermediate does not parse", "cluster", cl.Name)
			continue
		}
		rec := &model.Intermediate{Chain: string(chain), NotAfter: cert.NotAfter.UTC(), CSRDigest: digest}
		if err := putRecord(ctx, m.KV, keyspace.ClusterIntermediate(cl.Name), rec); err != nil {
			log.Error(err, "store intermediate", "cluster", cl.Name)
			continue
		}
		log.Info("signed cluster intermediate", "cluster", cl.Name, "notAfter", rec.NotAfter, "root", rootOf(chain))
	}
}

// rootOf names the root ending chain by its fingerprint's first 16 hex digits, as
// `meshfedctl trust check` shows it.
func rootOf(chain []byte) string {
	certs, err := trust.ParseCertificates(chain)
	if err != nil {
		return ""
	}
	return meshca.Fingerprint(certs[len(certs)-1])[:16]
}

// underOtherRoot reports whether chain (intermediate, then the root that signed it)
// ends in a root other than signing. With no signing root known it says no, so that
// nothing is re-signed on a failed read.
func underOtherRoot(chain string, signing *x509.Certificate) bool {
	if signing == nil {
		return false
	}
	certs, err := trust.ParseCertificates([]byte(chain))
	if err != nil || len(certs) < 2 {
		return true // not a chain this hub writes: answer again
	}
	return !certs[len(certs)-1].Equal(signing)
}
