package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/trust"
)

// TestMeshCA: with the hub's mesh CA on (cert-manager's real controllers, the root as a
// CA ClusterIssuer), every agent makes its cluster's intermediate key in its member
// cluster, sends only a CSR through etcd, and gets back a chain signed through a real
// CertificateRequest, which it stores next to the key; the trust bundle reaches each
// member cluster as a ConfigMap; workload certificates the agent issues verify against
// it with their SPIFFE IDs; MeshCluster status shows each intermediate's expiry; and a
// cluster's etcd credentials cannot write another cluster's CSR.
func TestMeshCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: meshfedBin(), MeshCA: true,
		WorkloadIdentities: []string{"shop/frontend"}, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	hub := hubClient(t, s)

	for _, c := range s.Clusters {
		kube := kubernetes.NewForConfigOrDie(c.Config())
		var chain, bundle []byte
		testutil.Eventually(t, 2*time.Minute, c.Name+"'s intermediate signed and stored next to its key", func() error {
			sec, err := kube.CoreV1().Secrets(hubinfo.Namespace).Get(ctx, clusteragent.IntermediateSecret, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(sec.Data[corev1.TLSCertKey]) == 0 {
				return errors.New("no chain yet")
			}
			chain = sec.Data[corev1.TLSCertKey]
			if _, err := trust.LoadIntermediate(chain, sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
				return fmt.Errorf("chain does not match the key made in the cluster: %w", err)
			}
			cm, err := kube.CoreV1().ConfigMaps(hubinfo.Namespace).Get(ctx, clusteragent.TrustBundleConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			bundle = []byte(cm.Data["ca.crt"])
			return nil
		})

		id, err := trust.WorkloadID("meshfed.local", c.Name, "shop", "frontend")
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, waitLong, c.Name+"'s workload certificate verifies against the bundle", func() error {
			leaf, err := os.ReadFile(filepath.Join(c.CertDir, "shop", "frontend", "tls.crt"))
			if err != nil {
				return err
			}
			v, err := trust.Verify(leaf, bundle, id)
			if err != nil {
				return err
			}
			if v.Cluster != c.Name {
				return fmt.Errorf("issued by cluster %q's intermediate", v.Cluster)
			}
			return nil
		})

		inter, err := pki.ParseCert(chain)
		if err != nil {
			t.Fatal(err)
		}
		if err := trust.CheckIntermediateBound(inter); err != nil {
			t.Errorf("%s's intermediate: %v", c.Name, err)
		}
		testutil.Eventually(t, waitLong, c.Name+"'s MeshCluster shows the intermediate's expiry", func() error {
			mc := &v1.MeshCluster{}
			if err := hub.Get(ctx, client.ObjectKey{Name: c.Name}, mc); err != nil {
				return err
			}
			if e := mc.Status.IntermediateCAExpiry; e == nil || !e.Time.Equal(inter.NotAfter.Truncate(time.Second)) {
				return fmt.Errorf("status.intermediateCAExpiry = %v, want %v", e, inter.NotAfter)
			}
			if !meta.IsStatusConditionTrue(mc.Status.Conditions, v1.ConditionIntermediateCA) {
				return fmt.Errorf("condition IntermediateCA: %+v", meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionIntermediateCA))
			}
			return nil
		})

	}

	out, err := exec.CommandContext(ctx, meshfedctlBin(), "trust", "check", "--dir", s.Dir).CombinedOutput()
	t.Logf("meshfedctl trust check:\n%s", out)
	if err != nil || strings.Count(string(out), "true") != len(s.Clusters) {
		t.Errorf("trust check: %v", err)
	}

	// alpha's credentials may not ask for beta's intermediate.
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
	if _, err := etcd.Put(ctx, keyspace.ClusterIntermediateCSR("beta"), "{}"); err == nil {
		t.Error("alpha's credentials wrote beta's intermediate CSR")
	}
}
