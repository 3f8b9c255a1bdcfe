package controllers

import (
	"context"
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

// meshCARefresh is how often the bundle is republished (a root added or retired by a
// rotation reaches etcd within it) and refused CSRs are looked at again.
const meshCARefresh = time.Minute

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
	tick := time.NewTicker(meshCARefresh)
	defer tick.Stop()
	for {
		if err := m.publishBundle(ctx, client); err != nil {
			log.Error(err, "publish trust bundle")
		}
		m.signPending(ctx, client, refused, log)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
			clear(refused)
		}
	}
}

func (m *MeshCA) publishBundle(ctx context.Context, c *meshca.Client) error {
	roots, err := meshca.Bundle(ctx, c)
	if err != nil {
		return err
	}
	return putRecord(ctx, m.KV, keyspace.TrustBundle(), &model.TrustBundle{TrustDomain: m.TrustDomain, Roots: string(roots)})
}

// signPending signs every cluster's CSR that has no answer yet.
func (m *MeshCA) signPending(ctx context.Context, c *meshca.Client, refused map[string]string, log logr.Logger) {
	for _, cl := range m.View.Clusters() {
		req := cl.IntermediateCSR
		if req == nil || cl.Info == nil {
			continue // no request, or not a registered cluster
		}
		digest := model.CSRDigest(req.CSR)
		if (cl.Intermediate != nil && cl.Intermediate.CSRDigest == digest) || refused[cl.Name] == digest {
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
		log.Info("signed cluster intermediate", "cluster", cl.Name, "notAfter", rec.NotAfter)
	}
}
