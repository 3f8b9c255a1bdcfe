package meshca_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/certmanager"
	"github.com/meshfed/meshfed/trust/meshca"
)

const td = "mesh.example.org"

// deadline bounds each wait: cert-manager on a loaded 2-core machine is slow.
const deadline = 2 * time.Minute

// TestMeshCA runs the hub's CA against real parts: a kube-apiserver and cert-manager's
// own controllers in-process. The subtests share them and run in order.
func TestMeshCA(t *testing.T) {
	start := time.Now()
	cp := localkube.ForTest(t, "hub")[0]
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), testLogger(t)))
	start = time.Now()
	cm, err := certmanager.Run(ctx, cp.Config, certmanager.Options{})
	if err != nil {
		cancel()
		t.Fatalf("certmanager.Run: %v", err)
	}
	t.Logf("cert-manager running in %s", time.Since(start).Round(time.Millisecond))
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-cm.Done():
		case <-time.After(deadline):
			t.Errorf("cert-manager did not stop within %s of its context ending", deadline)
		}
	}
	t.Cleanup(stop)

	c, err := meshca.NewClient(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = deadline

	var root *x509.Certificate
	t.Run("root bootstrap is idempotent", func(t *testing.T) {
		start := time.Now()
		first, err := meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: td})
		if err != nil {
			t.Fatalf("EnsureRoot: %v", err)
		}
		t.Logf("root bootstrapped and issuer Ready in %s", time.Since(start).Round(time.Millisecond))
		root = first
		if root.Subject.CommonName != "meshfed root "+td || !root.IsCA {
			t.Errorf("root subject %q IsCA=%v", root.Subject, root.IsCA)
		}

		// Again, sequentially and from three "replicas" at once: always the same root.
		again, err := meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: td})
		if err != nil || !again.Equal(root) {
			t.Fatalf("second EnsureRoot = %v, %v; want the same root", subject(again), err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Go(func() {
				got, err := meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: td})
				if err == nil && !got.Equal(root) {
					err = fmt.Errorf("got another root %q", got.Subject)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent EnsureRoot: %v", err)
			}
		}

		roots, err := meshca.Roots(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(roots) != 1 || roots[0].Secret != meshca.BootstrapRootSecret || !roots[0].Signing {
			t.Errorf("Roots = %+v, want the one bootstrap root, signing", roots)
		}
		secrets, err := c.Kube.CoreV1().Secrets(meshca.DefaultNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) != 1 {
			t.Errorf("%d Secrets in %s, want 1", len(secrets.Items), meshca.DefaultNamespace)
		}
		bundle, err := meshca.Bundle(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if certs, err := trust.ParseCertificates(bundle); err != nil || len(certs) != 1 || !certs[0].Equal(root) {
			t.Errorf("Bundle = %d certificates (%v), want the root", len(certs), err)
		}
		if got := gauge(t, "meshfed_trust_root_expiry_timestamp_seconds", meshca.BootstrapRootSecret); got != float64(root.NotAfter.Unix()) {
			t.Errorf("root expiry gauge = %v, want %d", got, root.NotAfter.Unix())
		}

		_, err = meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: "other.example.org"})
		if !errors.Is(err, trust.ErrTrustDomainMismatch) {
			t.Errorf("EnsureRoot with another trust domain = %v, want ErrTrustDomainMismatch", err)
		}
	})
	if root == nil {
		t.FailNow()
	}

	// The member cluster "east" makes its key; only the CSR goes to the hub.
	csrPEM, keyPEM, err := trust.NewIntermediateCSR(td, "east")
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	t.Run("intermediate signed through a real CertificateRequest", func(t *testing.T) {
		signed := counter(t, "signed")
		start := time.Now()
		chain, err = meshca.SignIntermediate(ctx, c, "east", csrPEM, 30*24*time.Hour)
		if err != nil {
			t.Fatalf("SignIntermediate: %v", err)
		}
		t.Logf("intermediate signed in %s", time.Since(start).Round(time.Millisecond))
		certs, err := trust.ParseCertificates(chain)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 2 || !certs[1].Equal(root) {
			t.Fatalf("chain holds %d certificates, want the intermediate and the root", len(certs))
		}
		ic := certs[0]
		if !ic.IsCA || ic.KeyUsage&x509.KeyUsageCertSign == 0 || ic.Subject.CommonName != "meshfed intermediate east" ||
			len(ic.URIs) != 1 || ic.URIs[0].String() != "spiffe://"+td+"/cluster/east" {
			t.Errorf("intermediate: IsCA=%v KeyUsage=%#x subject %q URIs %v", ic.IsCA, ic.KeyUsage, ic.Subject, ic.URIs)
		}
		if err := ic.CheckSignatureFrom(root); err != nil {
			t.Errorf("intermediate not signed by the root: %v", err)
		}
		// cert-manager's CA issuer copied the CSR's name constraints: the
		// intermediate may sign east's identities and nothing else.
		if err := trust.CheckIntermediateBound(ic); err != nil {
			t.Errorf("intermediate not bound to east: %v", err)
		}
		if !ic.PermittedDNSDomainsCritical || fmt.Sprint(ic.PermittedURIDomains) != "[east."+td+"]" ||
			fmt.Sprint(ic.ExcludedDNSDomains) != "[]" || len(ic.ExcludedDNSDomains) != 1 || fmt.Sprint(ic.ExcludedIPRanges) != "[0.0.0.0/0 ::/0]" ||
			len(ic.ExcludedEmailAddresses) != 1 || len(ic.PermittedDNSDomains)+len(ic.PermittedIPRanges)+len(ic.PermittedEmailAddresses)+len(ic.ExcludedURIDomains) > 0 {
			t.Errorf("intermediate name constraints: critical %v, permitted URI %q DNS %q IP %v email %q; excluded URI %q DNS %q IP %v email %q",
				ic.PermittedDNSDomainsCritical, ic.PermittedURIDomains, ic.PermittedDNSDomains, ic.PermittedIPRanges, ic.PermittedEmailAddresses,
				ic.ExcludedURIDomains, ic.ExcludedDNSDomains, ic.ExcludedIPRanges, ic.ExcludedEmailAddresses)
		}
		// The CSR asks for pathlen:0, but cert-manager's CA issuer overrides the
		// basic constraints of a CertificateRequest and writes no path length; the
		// root's path length 1 is what keeps the intermediate from signing a CA.
		t.Logf("intermediate path length as cert-manager signed it: MaxPathLen=%d MaxPathLenZero=%v (root's: %d)", ic.MaxPathLen, ic.MaxPathLenZero, root.MaxPathLen)
		if ic.MaxPathLen > 0 || root.MaxPathLen != 1 {
			t.Errorf("intermediate path length %d under a root of path length %d: the intermediate could sign CAs", ic.MaxPathLen, root.MaxPathLen)
		}
		if life := ic.NotAfter.Sub(ic.NotBefore); life != 30*24*time.Hour {
			t.Errorf("intermediate lives %s, asked for 30 days", life)
		}
		if exp, err := trust.IntermediateExpiry(chain); err != nil || !exp.Equal(ic.NotAfter) {
			t.Errorf("IntermediateExpiry = %s, %v", exp, err)
		}
		if trust.NeedsRenewal(ic, time.Now()) {
			t.Error("a fresh intermediate needs renewal")
		}
		if _, err := trust.LoadIntermediate(chain, keyPEM); err != nil {
			t.Errorf("the member cannot load its intermediate with its key: %v", err)
		}
		if got := counter(t, "signed"); got != signed+1 {
			t.Errorf("signed counter %v -> %v", signed, got)
		}
		crs, err := c.CertManager.CertmanagerV1().CertificateRequests(meshca.DefaultNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cr := range crs.Items {
			if cr.DeletionTimestamp == nil {
				t.Errorf("CertificateRequest %s left behind", cr.Name)
			}
		}
	})
	if chain == nil {
		t.FailNow()
	}

	t.Run("a CSR naming another cluster is refused", func(t *testing.T) {
		westCSR, _, err := trust.NewIntermediateCSR(td, "west")
		if err != nil {
			t.Fatal(err)
		}
		refused := counter(t, "refused")
		_, err = meshca.SignIntermediate(ctx, c, "east", westCSR, 0)
		if !errors.Is(err, trust.ErrWrongCluster) {
			t.Fatalf("SignIntermediate(east, CSR for west) = %v, want ErrWrongCluster", err)
		}
		if !strings.Contains(err.Error(), `"east"`) || !strings.Contains(err.Error(), "west") {
			t.Errorf("error %q does not name both clusters", err)
		}
		_, err = meshca.SignIntermediate(ctx, c, "east", csrPEM, time.Minute)
		if !errors.Is(err, trust.ErrInvalid) {
			t.Errorf("SignIntermediate with a 1-minute lifetime = %v, want ErrInvalid", err)
		}
		// A CSR as agents made them before identities were bound to clusters: a CA,
		// no path length, no name constraints.
		_, err = meshca.SignIntermediate(ctx, c, "east", unboundCSR(t, "east"), 0)
		if !errors.Is(err, trust.ErrInvalid) || !strings.Contains(err.Error(), "no name constraints") {
			t.Errorf("SignIntermediate(CSR without pathlen or name constraints) = %v, want refused", err)
		}
		if got := counter(t, "refused"); got != refused+3 {
			t.Errorf("refused counter %v -> %v, want +3", refused, got)
		}
	})

	// Workloads in "east" get certificates from the intermediate, in the cluster.
	ic, err := trust.LoadIntermediate(chain, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	const cartID = "spiffe://east." + td + "/ns/shop/sa/cart"
	leaf, _, err := trust.IssueWorkload(ic, td, "shop", "cart", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a workload certificate verifies against the bundle", func(t *testing.T) {
		bundle, err := meshca.Bundle(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		v, err := trust.Verify(leaf, bundle, cartID)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if v.SPIFFEID != cartID || v.Cluster != "east" || !v.Root.Equal(root) {
			t.Errorf("Verified = {%s, cluster %q, root %q}", v.SPIFFEID, v.Cluster, v.Root.Subject)
		}
		certs, _ := trust.ParseCertificates(leaf)
		xb := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("east."+td), []*x509.Certificate{root})
		if id, _, err := x509svid.Verify(certs, xb); err != nil || id.String() != cartID {
			t.Errorf("go-spiffe x509svid.Verify = %s, %v", id, err)
		}

		// With east's key, a thief mints west's cart and the bare trust domain's:
		// the name constraints cert-manager copied refuse both, in trust.Verify and
		// in go-spiffe.
		for _, id := range []string{"spiffe://west." + td + "/ns/shop/sa/cart", "spiffe://" + td + "/ns/shop/sa/cart"} {
			minted := mintLeaf(t, ic.Cert, keyPEM, id)
			if _, err := trust.Verify(minted, bundle, id); !errors.Is(err, trust.ErrNotVerified) || !strings.Contains(err.Error(), "not permitted") {
				t.Errorf("Verify(%s minted with east's key) = %v, want refused by the name constraints", id, err)
			}
			certs, _ := trust.ParseCertificates(minted)
			xb := x509bundle.FromX509Authorities(spiffeid.RequireFromString(id).TrustDomain(), []*x509.Certificate{root})
			if _, _, err := x509svid.Verify(certs, xb); err == nil {
				t.Errorf("go-spiffe accepted %s minted with east's key", id)
			}
		}

		if _, err := trust.Verify(leaf, bundle, "spiffe://east."+td+"/ns/shop/sa/checkout"); !errors.Is(err, trust.ErrNotVerified) {
			t.Errorf("Verify with another workload's ID = %v, want ErrNotVerified", err)
		}
		foreign, _, err := trust.NewRoot(td, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trust.Verify(leaf, foreign, cartID); !errors.Is(err, trust.ErrNotVerified) {
			t.Errorf("Verify against a foreign root = %v, want ErrNotVerified", err)
		}
	})

	t.Run("the approver ignores requests outside meshfed-system", func(t *testing.T) {
		rogueCSR, _, err := trust.NewIntermediateCSR(td, "rogue")
		if err != nil {
			t.Fatal(err)
		}
		crs := c.CertManager.CertmanagerV1().CertificateRequests("default")
		cr, err := crs.Create(ctx, &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "rogue"},
			Spec: cmapi.CertificateRequestSpec{
				Request: rogueCSR, IsCA: true, Usages: []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageDigitalSignature},
				IssuerRef: cmmeta.IssuerReference{Name: meshca.IssuerName, Kind: cmapi.ClusterIssuerKind, Group: "cert-manager.io"},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The CA signer sees it and waits for an approval that never comes.
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, deadline, true, func(ctx context.Context) (bool, error) {
			evs, err := c.Kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("involvedObject.name", cr.Name).String(),
			})
			if err != nil {
				return false, nil //nolint:nilerr // retried until the deadline
			}
			for _, ev := range evs.Items {
				if ev.Reason == "WaitingForApproval" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("no WaitingForApproval event for default/rogue: %v", err)
		}
		got, err := crs.Get(ctx, cr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Status.Certificate) > 0 || hasCondition(got, cmapi.CertificateRequestConditionApproved) {
			t.Errorf("default/rogue was approved or signed: %+v", got.Status.Conditions)
		}
		if err := crs.Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	})

	t.Run("intermediates for several clusters at once", func(t *testing.T) {
		start := time.Now()
		var wg sync.WaitGroup
		for _, cluster := range []string{"north", "south", "west"} {
			wg.Go(func() {
				csr, key, err := trust.NewIntermediateCSR(td, cluster)
				if err != nil {
					t.Error(err)
					return
				}
				chain, err := meshca.SignIntermediate(ctx, c, cluster, csr, 0)
				if err != nil {
					t.Errorf("SignIntermediate(%s): %v", cluster, err)
					return
				}
				ic, err := trust.LoadIntermediate(chain, key)
				if err != nil || ic.Cluster != cluster {
					t.Errorf("LoadIntermediate(%s) = cluster %v, %v", cluster, ic, err)
				}
				if life := ic.Cert.NotAfter.Sub(ic.Cert.NotBefore); life != trust.DefaultIntermediateLifetime {
					t.Errorf("%s: default lifetime %s", cluster, life)
				}
			})
		}
		wg.Wait()
		t.Logf("3 intermediates signed concurrently in %s", time.Since(start).Round(time.Millisecond))
	})

	// The steps of a staged root rotation, done by hand: what `meshfedctl trust
	// rotate` automates (next subtest). No workload certificate stops verifying at
	// any step.
	t.Run("bundle holds every active root, ready for rotation", func(t *testing.T) {
		// A minute younger than the first root, so that "oldest first" is unambiguous
		// (NotBefore has one-second resolution).
		newPEM, newKey, err := trust.NewRoot(td, 0, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		newRoot, _ := trust.ParseCertificates(newPEM)
		secrets := c.Kube.CoreV1().Secrets(meshca.DefaultNamespace)
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "meshfed-root-2", Labels: map[string]string{meshca.RootLabel: "true"},
				Annotations: map[string]string{meshca.TrustDomainAnnotation: td}},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: newPEM, corev1.TLSPrivateKeyKey: newKey},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}

		// 1. The new root joins the bundle; the old one still signs.
		bundle, err := meshca.Bundle(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if certs, _ := trust.ParseCertificates(bundle); len(certs) != 2 {
			t.Fatalf("bundle holds %d roots, want 2", len(certs))
		}
		if _, err := trust.Verify(leaf, bundle, cartID); err != nil {
			t.Errorf("old leaf against the two-root bundle: %v", err)
		}

		// 2. The issuer signs with the new root; east's intermediate is re-signed.
		iss, err := c.CertManager.CertmanagerV1().ClusterIssuers().Get(ctx, meshca.IssuerName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iss.Spec.CA.SecretName = "meshfed-root-2"
		if _, err := c.CertManager.CertmanagerV1().ClusterIssuers().Update(ctx, iss, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := meshca.EnsureRoot(ctx, c, meshca.RootOptions{TrustDomain: td})
		if err != nil || !got.Equal(newRoot[0]) {
			t.Fatalf("EnsureRoot after the switch = %v, %v; want the new root, and no third", subject(got), err)
		}
		roots, err := meshca.Roots(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(roots) != 2 || roots[0].Signing || !roots[1].Signing {
			t.Errorf("Roots = %+v, want old (not signing) then new (signing)", roots)
		}
		chain2, err := meshca.SignIntermediate(ctx, c, "east", csrPEM, 0)
		if err != nil {
			t.Fatalf("re-sign east under the new root: %v", err)
		}
		ic2, err := trust.LoadIntermediate(chain2, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf2, _, err := trust.IssueWorkload(ic2, td, "shop", "cart", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		v, err := trust.Verify(leaf2, bundle, cartID)
		if err != nil || !v.Root.Equal(newRoot[0]) {
			t.Errorf("new leaf against the two-root bundle: anchored at %v, %v", v, err)
		}

		// 3. The old root retires: old leaves stop verifying, new ones go on.
		old, err := secrets.Get(ctx, meshca.BootstrapRootSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		old.Labels[meshca.RootLabel] = "false"
		if _, err := secrets.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		bundle, err = meshca.Bundle(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trust.Verify(leaf2, bundle, cartID); err != nil {
			t.Errorf("new leaf against the new bundle: %v", err)
		}
		if _, err := trust.Verify(leaf, bundle, cartID); !errors.Is(err, trust.ErrNotVerified) {
			t.Errorf("old leaf against the new bundle = %v, want ErrNotVerified", err)
		}
		if n := gaugeCount(t, "meshfed_trust_root_expiry_timestamp_seconds"); n != 1 {
			t.Errorf("root expiry gauge has %d series, want 1", n)
		}
	})

	// The same steps as `meshfedctl trust rotate` takes them, each refusing what
	// would break trust.
	t.Run("rotation steps: AddRoot, SwitchSigning, RetireRoot", func(t *testing.T) {
		// The hand-made root above starts a minute in the future; a rotation moves
		// to a root that starts after the current one.
		rc := *c
		rc.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		phase := func() meshca.Rotation {
			t.Helper()
			roots, err := meshca.Roots(ctx, &rc)
			if err != nil {
				t.Fatal(err)
			}
			rot, err := meshca.Phase(roots)
			if err != nil {
				t.Fatal(err)
			}
			return rot
		}
		rot := phase()
		if rot.Phase != meshca.PhaseSteady || rot.New.Secret != "meshfed-root-2" || !rot.New.Signing {
			t.Fatalf("before: %+v, want steady on meshfed-root-2", rot)
		}
		if err := meshca.RetireRoot(ctx, &rc, "meshfed-root-2"); !errors.Is(err, meshca.ErrRotation) {
			t.Errorf("retire the signing root = %v, want ErrRotation", err)
		}
		if err := meshca.SwitchSigning(ctx, &rc, meshca.BootstrapRootSecret); !errors.Is(err, meshca.ErrRotation) {
			t.Errorf("sign with a retired root = %v, want ErrRotation", err)
		}

		added, created, err := meshca.AddRoot(ctx, &rc, meshca.RootOptions{})
		if err != nil || !created {
			t.Fatalf("AddRoot = %v, %v", created, err)
		}
		again, created, err := meshca.AddRoot(ctx, &rc, meshca.RootOptions{})
		if err != nil || created || again.Secret != added.Secret {
			t.Errorf("AddRoot again = %s, %v, %v; want %s, not created", again.Secret, created, err, added.Secret)
		}
		if rot := phase(); rot.Phase != meshca.PhaseAdded || rot.Old.Secret != "meshfed-root-2" || rot.New.Secret != added.Secret {
			t.Fatalf("after AddRoot: %+v", rot)
		}
		if _, err := trust.Verify(leaf, mustBundle(t, ctx, c), cartID); err == nil {
			t.Errorf("the bootstrap root's leaf verifies against %s's bundle", added.Secret)
		}

		if err := meshca.SwitchSigning(ctx, &rc, added.Secret); err != nil {
			t.Fatal(err)
		}
		if rot := phase(); rot.Phase != meshca.PhaseSwitched || !rot.New.Signing {
			t.Fatalf("after SwitchSigning: %+v", rot)
		}
		if _, _, err := meshca.AddRoot(ctx, &rc, meshca.RootOptions{}); !errors.Is(err, meshca.ErrRotation) {
			t.Errorf("AddRoot while switched = %v, want ErrRotation", err)
		}
		chain, err := meshca.SignIntermediate(ctx, c, "east", csrPEM, 0)
		if err != nil {
			t.Fatal(err)
		}
		ic, err := trust.LoadIntermediate(chain, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf3, _, err := trust.IssueWorkload(ic, td, "shop", "cart", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := trust.Verify(leaf3, mustBundle(t, ctx, c), cartID); err != nil || !v.Root.Equal(added.Cert) {
			t.Errorf("leaf after the switch: %v, %v; want it anchored at %s", v, err, added.Secret)
		}

		if err := meshca.RetireRoot(ctx, &rc, "meshfed-root-2"); err != nil {
			t.Fatal(err)
		}
		if err := meshca.RetireRoot(ctx, &rc, "meshfed-root-2"); err != nil {
			t.Errorf("retire a retired root = %v, want nothing done", err)
		}
		if rot := phase(); rot.Phase != meshca.PhaseSteady || rot.New.Secret != added.Secret {
			t.Fatalf("after RetireRoot: %+v", rot)
		}
		if certs, _ := trust.ParseCertificates(mustBundle(t, ctx, c)); len(certs) != 1 || !certs[0].Equal(added.Cert) {
			t.Errorf("bundle after the rotation holds %d roots, want %s alone", len(certs), added.Secret)
		}
	})

	t.Run("cert-manager stops with its context", func(t *testing.T) {
		stop()
		if err := cm.Err(); err != nil {
			t.Errorf("cert-manager stopped with %v", err)
		}
	})
}

func mustBundle(t *testing.T, ctx context.Context, c *meshca.Client) []byte {
	t.Helper()
	b, err := meshca.Bundle(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hasCondition(cr *cmapi.CertificateRequest, typ cmapi.CertificateRequestConditionType) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == typ {
			return true
		}
	}
	return false
}

func subject(c *x509.Certificate) string {
	if c == nil {
		return "<nil>"
	}
	return c.Subject.String()
}

// counter reads meshfed_trust_intermediate_csrs_total{result}.
func counter(t *testing.T, result string) float64 {
	t.Helper()
	return metric(t, "meshfed_trust_intermediate_csrs_total", "result", result)
}

// metrics is the registry a component running the mesh CA would serve.
var metrics = sync.OnceValue(func() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	meshca.RegisterMetrics(reg)
	return reg
})

func gauge(t *testing.T, name, secret string) float64 {
	t.Helper()
	return metric(t, name, "secret", secret)
}

func metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func gaugeCount(t *testing.T, name string) int {
	t.Helper()
	families, err := metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

// testLogger logs into t until the test ends; cert-manager goroutines that outlive it
// (its event broadcasters) then log nowhere instead of panicking the test binary.
func testLogger(t *testing.T) logr.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
	})
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(prefix, args)
		}
	}, funcr.Options{})
}

// mintLeaf signs a workload certificate for id with an intermediate's key, whatever
// the intermediate may sign: what a thief of the key can make.
func mintLeaf(t *testing.T, ic *x509.Certificate, keyPEM []byte, id string) []byte {
	t.Helper()
	icKey, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ic, key.Public(), icKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(pki.EncodeCert(der), pki.EncodeCert(ic.Raw)...)
}

// unboundCSR is a CSR for cluster's intermediate as agents made them before
// identities were bound to clusters.
func unboundCSR(t *testing.T, cluster string) []byte {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := trust.ClusterID(td, cluster)
	u, _ := url.Parse(id)
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{trust.Organization}, CommonName: trust.IntermediateCommonName(cluster)},
		URIs:    []*url.URL{u}, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
