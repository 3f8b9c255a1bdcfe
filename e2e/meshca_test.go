package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/agentcreds"
	"github.com/meshfed/meshfed/internal/etcdconn"
	"github.com/meshfed/meshfed/internal/hubinfo"
	"github.com/meshfed/meshfed/internal/keyspace"
	"github.com/meshfed/meshfed/internal/model"
	"github.com/meshfed/meshfed/internal/sandbox"
	"github.com/meshfed/meshfed/trust"
)

// TestMeshCA: with the mesh CA on, the hub holds the root in cert-manager and publishes
// the trust bundle; a member cluster's CSR for its intermediate, written to etcd with
// that cluster's own credentials (the key stays with the caller), comes back signed
// through a real cert-manager CertificateRequest and chains to the published root; a
// workload certificate from it verifies against the bundle; MeshCluster status shows
// the intermediate's expiry; a CSR naming another cluster is not signed.
func TestMeshCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: meshfedBin(), MeshCA: true,
		Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Down)

	// alpha's own etcd credentials, as its agent has them.
	alpha := s.Cluster("alpha")
	creds, err := agentcreds.Load(ctx, kubernetes.NewForConfigOrDie(alpha.Config()), hubinfo.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := etcdconn.New(ctx, creds.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	get := func(key string, rec model.Record) error {
		resp, err := etcd.Get(ctx, key)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return errors.New("not there yet")
		}
		return json.Unmarshal(resp.Kvs[0].Value, rec)
	}
	put := func(key string, rec model.Record) {
		data, err := model.Encode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcd.Put(ctx, key, string(data)); err != nil {
			t.Fatal(err)
		}
	}

	bundle := &model.TrustBundle{}
	eventually(t, 2*time.Minute, "trust bundle published", func() error { return get(keyspace.TrustBundle(), bundle) })
	if bundle.TrustDomain != "meshfed.local" {
		t.Errorf("bundle trust domain %q", bundle.TrustDomain)
	}

	// A CSR that names beta, in alpha's key: never signed.
	wrongCSR, _, err := trust.NewIntermediateCSR("meshfed.local", "beta")
	if err != nil {
		t.Fatal(err)
	}
	put(keyspace.ClusterIntermediateCSR("alpha"), &model.IntermediateCSR{TrustDomain: "meshfed.local", CSR: string(wrongCSR)})
	eventually(t, waitLong, "the hub refuses alpha's CSR naming beta", func() error {
		resp, err := http.Get("http://" + s.Hub.MetricsAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `meshfed_trust_intermediate_csrs_total{result="refused"} 1`) {
			return errors.New("no refusal counted yet")
		}
		return nil
	})
	if err := get(keyspace.ClusterIntermediate("alpha"), &model.Intermediate{}); err == nil {
		t.Fatal("an intermediate was written for a CSR naming another cluster")
	}

	csrPEM, keyPEM, err := trust.NewIntermediateCSR("meshfed.local", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	put(keyspace.ClusterIntermediateCSR("alpha"), &model.IntermediateCSR{TrustDomain: "meshfed.local", CSR: string(csrPEM)})
	inter := &model.Intermediate{}
	eventually(t, 2*time.Minute, "alpha's intermediate signed", func() error {
		if err := get(keyspace.ClusterIntermediate("alpha"), inter); err != nil {
			return err
		}
		if inter.CSRDigest != model.CSRDigest(string(csrPEM)) {
			return fmt.Errorf("answer for another CSR (%s)", inter.CSRDigest)
		}
		return nil
	})

	ic, err := trust.LoadIntermediate([]byte(inter.Chain), keyPEM)
	if err != nil {
		t.Fatalf("load the signed intermediate with the key that never left: %v", err)
	}
	leaf, _, err := trust.IssueWorkload(ic, "meshfed.local", "shop", "frontend", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := trust.WorkloadID("meshfed.local", "shop", "frontend")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.Verify(leaf, []byte(bundle.Roots), id); err != nil {
		t.Errorf("workload certificate does not verify against the published bundle: %v", err)
	}

	hub := hubClient(t, s)
	eventually(t, waitLong, "MeshCluster alpha shows the intermediate's expiry", func() error {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: "alpha"}, mc); err != nil {
			return err
		}
		if mc.Status.IntermediateCAExpiry == nil || !mc.Status.IntermediateCAExpiry.Time.Equal(inter.NotAfter.Truncate(time.Second)) {
			return fmt.Errorf("status.intermediateCAExpiry = %v, want %v", mc.Status.IntermediateCAExpiry, inter.NotAfter)
		}
		return nil
	})

	// alpha may not write beta's CSR key.
	if _, err := etcd.Put(ctx, keyspace.ClusterIntermediateCSR("beta"), "{}"); err == nil {
		t.Error("alpha's credentials wrote beta's intermediate CSR")
	}
}
