package signer_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"go.uber.org/goleak"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/signer"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

// hub is one real kube-apiserver shared by every test of the package: starting one
// costs seconds on a small machine. Tests use distinct cluster names, so they never
// see each other's objects, and each runs (and stops) its own signer.
var hub *localkube.ControlPlane

// testReg is the registration of every MeshCluster of these tests.
var testReg = hubinfo.NewRegistration()

func TestMain(m *testing.M) {
	// controller-runtime complains, with a stack trace, when its global logger is
	// never set; the signer's own logs go to each test's logger.
	ctrl.SetLogger(logr.Discard())
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ignore := goleak.IgnoreCurrent()
	dir, err := os.MkdirTemp("", "meshfed-signer-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cp, err := localkube.Start(context.Background(), localkube.Options{Name: "hub", Dir: dir, InstallCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hub = cp
	code := m.Run()
	cp.Stop()
	// Every test stops its manager; nothing it started may outlive it.
	if code == 0 {
		if err := goleak.Find(ignore); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}

// waitFor bounds every wait: generous, since a loaded 2-core machine running an API
// server, its etcd and the test can stall a watch for seconds.
const waitFor = 60 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	return ctx
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test-etcd-client-ca", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func kubeClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kube
}

func adminClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(hub.Config, client.Options{Scheme: newScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hubIdentity is the user the hub runs as in a cluster: its service account, bound to
// the RBAC in deploy/hub/rbac.yaml.
const hubIdentity = "system:serviceaccount:" + hubinfo.Namespace + ":meshfed-hub"

// hubConfig applies the hub's RBAC as shipped and returns a config that authenticates
// as the hub's service account, so the signer runs with exactly the permissions an
// installed hub has, not as an administrator.
func hubConfig(t *testing.T) *rest.Config {
	t.Helper()
	var manifests [][]byte
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} { // as installed: the namespace first
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "hub", f))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, data)
	}
	objs, err := kubeapply.Decode(manifests...)
	if err != nil {
		t.Fatal(err)
	}
	apply, err := kubeapply.New(hub.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply.Apply(testContext(t), objs); err != nil {
		t.Fatalf("apply deploy/hub/{namespace,rbac}.yaml: %v", err)
	}
	cfg, err := hub.UserConfig(hubIdentity, "system:serviceaccounts", "system:serviceaccounts:"+hubinfo.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startSigner runs a manager with the signer until the test ends. edit, if given,
// changes the manager's options.
func startSigner(t *testing.T, ca *pki.CA, edit ...func(*ctrl.Options)) {
	t.Helper()
	opts := ctrl.Options{
		Scheme:                 newScheme(t),
		Logger:                 testr.NewWithOptions(t, testr.Options{Verbosity: 0}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Each test runs its own manager with the same controller in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	for _, e := range edit {
		e(&opts)
	}
	mgr, err := ctrl.NewManager(hubConfig(t), opts)
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	if err := (&signer.Reconciler{Client: mgr.GetClient(), CA: ca}).Setup(mgr); err != nil {
		t.Fatalf("signer setup: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("manager did not stop within %s", waitFor)
		}
	})
}

// registerCluster creates a MeshCluster, as meshfedctl cluster register does first.
func registerCluster(t *testing.T, name string) {
	t.Helper()
	c := adminClient(t)
	mc := &v1.MeshCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.MeshClusterSpec{Region: "eu-west-1", Zones: []v1.LocalityName{"eu-west-1a"}, Registration: testReg},
	}
	if err := c.Create(testContext(t), mc); err != nil {
		t.Fatalf("create MeshCluster %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), mc) })
}

// request is a CSR to create: its PEM request, signer and requested lifetime.
type request struct {
	pem        []byte
	signerName string
	expiration *int32 // seconds; nil leaves the signer's default
}

// etcdRequest asks for the etcd credentials of cluster, as meshfedctl does.
func etcdRequest(t *testing.T, cluster string) (request, []byte) {
	t.Helper()
	csrPEM, keyPEM, err := pki.NewCSR(hubinfo.EtcdUser(cluster, testReg))
	if err != nil {
		t.Fatal(err)
	}
	return request{pem: csrPEM, signerName: hubinfo.SignerName, expiration: ptr.To(int32(3600))}, keyPEM
}

// customRequest makes a CSR from tmpl, for requests meshfedctl would never make.
func customRequest(t *testing.T, tmpl *x509.CertificateRequest) request {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return request{
		pem:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		signerName: hubinfo.SignerName, expiration: ptr.To(int32(3600)),
	}
}

// createCSR creates the CSR as whoever kube authenticates as; the API server records
// that user in spec.username.
func createCSR(t *testing.T, kube kubernetes.Interface, r request) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           r.pem,
			SignerName:        r.signerName,
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			ExpirationSeconds: r.expiration,
		},
	}
	csrs := kube.CertificatesV1().CertificateSigningRequests()
	created, err := csrs.Create(testContext(t), csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	t.Cleanup(func() {
		_ = kubeClient(t, hub.Config).CertificatesV1().CertificateSigningRequests().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	return created
}

func condition(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i, c := range csr.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}

// waitDecided waits until the signer is done with the CSR: denied, failed, or
// approved and signed.
func waitDecided(t *testing.T, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csrs := kubeClient(t, hub.Config).CertificatesV1().CertificateSigningRequests()
	var got *certificatesv1.CertificateSigningRequest
	err := wait.PollUntilContextTimeout(testContext(t), 100*time.Millisecond, waitFor, true, func(ctx context.Context) (bool, error) {
		csr, err := csrs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried until the deadline
		}
		got = csr
		return condition(csr, certificatesv1.CertificateDenied) != nil || condition(csr, certificatesv1.CertificateFailed) != nil ||
			len(csr.Status.Certificate) > 0, nil
	})
	if err != nil {
		t.Fatalf("CSR %s not decided within %s; last seen: %+v", name, waitFor, got.Status)
	}
	return got
}

// wantSigned checks that the CSR was approved by the hub and signed with a client
// certificate for cluster's etcd user that chains to ca, pairs with keyPEM (if given)
// and expires within [from+lifetime, to+lifetime].
func wantSigned(t *testing.T, csr *certificatesv1.CertificateSigningRequest, ca *pki.CA, cluster string, keyPEM []byte,
	lifetime time.Duration, from, to time.Time) *x509.Certificate {
	t.Helper()
	if c := condition(csr, certificatesv1.CertificateDenied); c != nil {
		t.Fatalf("CSR denied: %s", c.Message)
	}
	if c := condition(csr, certificatesv1.CertificateFailed); c != nil {
		t.Fatalf("CSR failed: %s", c.Message)
	}
	approved := condition(csr, certificatesv1.CertificateApproved)
	if approved == nil || approved.Reason != "MeshfedHubApproved" || !strings.Contains(approved.Message, fmt.Sprintf("%q", cluster)) {
		t.Errorf("Approved condition %+v, want the hub's approval naming cluster %q", approved, cluster)
	}
	cert, err := pki.ParseCert(csr.Status.Certificate)
	if err != nil {
		t.Fatalf("status.certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not chain to the CA for client auth: %v", err)
	}
	if cert.Subject.CommonName != hubinfo.EtcdUser(cluster, testReg) || len(cert.Subject.Organization) > 0 {
		t.Errorf("subject %v, want CN %s only", cert.Subject, hubinfo.EtcdUser(cluster, testReg))
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKUs %v, want client auth only", cert.ExtKeyUsage)
	}
	if cert.IsCA || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.URIs)+len(cert.EmailAddresses) > 0 {
		t.Errorf("certificate is a CA (%v) or carries SANs", cert.IsCA)
	}
	if keyPEM != nil {
		if _, err := tls.X509KeyPair(csr.Status.Certificate, keyPEM); err != nil {
			t.Errorf("certificate does not pair with the requester's key: %v", err)
		}
	}
	// X.509 times have second resolution.
	if lo, hi := from.Add(lifetime).Truncate(time.Second), to.Add(lifetime); cert.NotAfter.Before(lo) || cert.NotAfter.After(hi) {
		t.Errorf("NotAfter %v, want within [%v, %v] (lifetime %v)", cert.NotAfter, lo, hi, lifetime)
	}
	return cert
}

func wantDenied(t *testing.T, csr *certificatesv1.CertificateSigningRequest, want string) {
	t.Helper()
	denied := condition(csr, certificatesv1.CertificateDenied)
	if denied == nil {
		t.Fatalf("CSR not denied; status %+v", csr.Status)
	}
	if denied.Reason != "MeshfedHubDenied" || !strings.Contains(denied.Message, want) {
		t.Errorf("Denied %s: %q, want reason MeshfedHubDenied and a message containing %q", denied.Reason, denied.Message, want)
	}
	if condition(csr, certificatesv1.CertificateApproved) != nil || len(csr.Status.Certificate) > 0 {
		t.Errorf("denied CSR also approved or signed: %+v", csr.Status)
	}
}

// A CSR made as meshfedctl makes it, by an administrator, for a registered cluster is
// approved and signed: a client certificate for the cluster's etcd user, chained to
// the etcd client CA, for the requester's key, living as long as asked.
func TestSignerApprovesRegisteredCluster(t *testing.T) {
	ca := newCA(t)
	startSigner(t, ca)
	registerCluster(t, "alpha")
	admin := kubeClient(t, hub.Config)

	req, keyPEM := etcdRequest(t, "alpha")
	from := time.Now()
	csr := createCSR(t, admin, req)
	got := waitDecided(t, csr.Name)
	wantSigned(t, got, ca, "alpha", keyPEM, time.Hour, from, time.Now())
}

// A MeshCluster created just before its CSR may not be in the signer's cache yet
// (its watch event can trail the CSR's on a loaded machine), and a denial is final:
// the signer asks the API server before denying. A cache that never sees
// MeshClusters stands in for one that has not seen this one yet.
func TestSignerApprovesClusterItsCacheHasNotSeen(t *testing.T) {
	ca := newCA(t)
	startSigner(t, ca, func(o *ctrl.Options) {
		o.Cache = cache.Options{ByObject: map[client.Object]cache.ByObject{
			&v1.MeshCluster{}: {Label: labels.SelectorFromSet(labels.Set{"test.meshfed.io/never": "true"})},
		}}
	})
	registerCluster(t, "foxtrot")
	admin := kubeClient(t, hub.Config)

	req, keyPEM := etcdRequest(t, "foxtrot")
	from := time.Now()
	csr := createCSR(t, admin, req)
	wantSigned(t, waitDecided(t, csr.Name), ca, "foxtrot", keyPEM, time.Hour, from, time.Now())

	// A cluster that really is not registered is still denied.
	missing, _ := etcdRequest(t, "golf")
	wantDenied(t, waitDecided(t, createCSR(t, admin, missing).Name), `cluster "golf" is not registered`)
}

// The signer caps the lifetime at MaxLifetime and uses DefaultLifetime when the CSR
// asks for none.
func TestSignerLifetime(t *testing.T) {
	ca := newCA(t)
	startSigner(t, ca)
	registerCluster(t, "lifetime")
	admin := kubeClient(t, hub.Config)

	for name, tc := range map[string]struct {
		expiration *int32
		want       time.Duration
	}{
		"a year is capped": {ptr.To(int32(365 * 24 * 3600)), signer.MaxLifetime},
		"none is default":  {nil, signer.DefaultLifetime},
		"short is kept":    {ptr.To(int32(600)), 10 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			req, keyPEM := etcdRequest(t, "lifetime")
			req.expiration = tc.expiration
			from := time.Now()
			csr := createCSR(t, admin, req)
			got := waitDecided(t, csr.Name)
			wantSigned(t, got, ca, "lifetime", keyPEM, tc.want, from, time.Now())
		})
	}
}

// bindRules gives user the rules cluster-wide.
func bindRules(t *testing.T, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := testContext(t)
	rbac := kubeClient(t, hub.Config).RbacV1()
	name := "test-" + user
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// userClient authenticates as user and waits until RBAC lets it create CSRs, since
// the authorizer learns of new bindings through a watch.
func userClient(t *testing.T, user string) kubernetes.Interface {
	t.Helper()
	cfg, err := hub.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubeClient(t, cfg)
	err = wait.PollUntilContextTimeout(testContext(t), 100*time.Millisecond, waitFor, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("RBAC for %s not effective within %s", user, waitFor)
	}
	return kube
}

var requestCSRs = rbacv1.PolicyRule{
	APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"},
	Verbs: []string{"create", "get", "list", "watch"},
}

// Every reason to deny, each with a message that tells the requester what is wrong.
// wantDeniedEvent waits for the signer's Warning Event on the CSR, saying why. The
// signer runs with the shipped RBAC, so this also checks that it may record Events.
func wantDeniedEvent(t *testing.T, csrName, want string) {
	t.Helper()
	kube := kubeClient(t, hub.Config)
	testutil.Eventually(t, waitFor, "Denied Event on CSR "+csrName, func() error {
		// Events of cluster-scoped objects go to the default namespace.
		list, err := kube.EventsV1().Events(metav1.NamespaceDefault).List(testContext(t), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "CertificateSigningRequest" && ev.Regarding.Name == csrName && ev.ReportingController == signer.EventSource &&
				ev.Type == corev1.EventTypeWarning && ev.Reason == "Denied" && strings.Contains(ev.Note, want) {
				return nil
			}
		}
		return fmt.Errorf("no Denied Event among %d in %s", len(list.Items), metav1.NamespaceDefault)
	})
}

func TestSignerDenies(t *testing.T) {
	ca := newCA(t)
	startSigner(t, ca)
	registerCluster(t, "bravo")
	registerCluster(t, "charlie")
	registerCluster(t, "delta")
	admin := kubeClient(t, hub.Config)
	revoked := &v1.MeshCluster{}
	if err := adminClient(t).Get(testContext(t), client.ObjectKey{Name: "delta"}, revoked); err != nil {
		t.Fatal(err)
	}
	revoked.Spec.Revoked = true
	if err := adminClient(t).Update(testContext(t), revoked); err != nil {
		t.Fatal(err)
	}

	// mallory may request CSRs and read MeshClusters, but update none.
	bindRules(t, "mallory", requestCSRs, rbacv1.PolicyRule{
		APIGroups: []string{v1.GroupVersion.Group}, Resources: []string{"meshclusters"}, Verbs: []string{"get", "list", "watch"},
	})
	mallory := userClient(t, "mallory")
	// operator may update charlie only.
	bindRules(t, "operator", requestCSRs, rbacv1.PolicyRule{
		APIGroups: []string{v1.GroupVersion.Group}, Resources: []string{"meshclusters"}, Verbs: []string{"get", "update"},
		ResourceNames: []string{"charlie"},
	})
	operator := userClient(t, "operator")

	cn := func(cn string) request {
		return customRequest(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}})
	}
	etcd := func(cluster string) request { r, _ := etcdRequest(t, cluster); return r }
	for name, tc := range map[string]struct {
		as   kubernetes.Interface
		req  request
		want string
	}{
		"unregistered cluster": {admin, etcd("nowhere"), `cluster "nowhere" is not registered`},
		"CN root":              {admin, cn("root"), `common name "root" is not the etcd user of a cluster`},
		"CN without prefix":    {admin, cn("bravo"), `common name "bravo" is not the etcd user of a cluster`},
		"CN of invalid cluster": {admin, cn(hubinfo.EtcdUser("Bravo_1", testReg)),
			fmt.Sprintf("common name %q is not the etcd user of a cluster", hubinfo.EtcdUser("Bravo_1", testReg))},
		"organization": {admin, customRequest(t, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: hubinfo.EtcdUser("bravo", testReg), Organization: []string{"system:masters"}}}),
			"the CSR may hold only a common name"},
		"organizational unit": {admin, customRequest(t, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: hubinfo.EtcdUser("bravo", testReg), OrganizationalUnit: []string{"x"}}}),
			"the CSR may hold only a common name"},
		"DNS SAN": {admin, customRequest(t, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: hubinfo.EtcdUser("bravo", testReg)}, DNSNames: []string{"etcd.example"}}),
			"the CSR may hold only a common name"},
		"earlier registration": {admin, cn(hubinfo.EtcdUser("bravo", hubinfo.NewRegistration())),
			"credentials of earlier registrations are never issued again"},
		"user of a cluster registered before registrations existed": {admin, cn(hubinfo.EtcdUser("bravo", "")),
			"credentials of earlier registrations are never issued again"},
		"revoked cluster": {admin, etcd("delta"), `cluster "delta" is revoked`},
		"user without update on the MeshCluster": {mallory, etcd("bravo"),
			`user "mallory" may not update MeshCluster "bravo"`},
		"user with update on another MeshCluster": {operator, etcd("bravo"),
			`user "operator" may not update MeshCluster "bravo"`},
	} {
		t.Run(name, func(t *testing.T) {
			csr := createCSR(t, tc.as, tc.req)
			wantDenied(t, waitDecided(t, csr.Name), tc.want)
			wantDeniedEvent(t, csr.Name, tc.want)
		})
	}

	// The same operator gets the credentials of the cluster it may update.
	t.Run("user with update on its MeshCluster", func(t *testing.T) {
		req, keyPEM := etcdRequest(t, "charlie")
		from := time.Now()
		csr := createCSR(t, operator, req)
		if csr.Spec.Username != "operator" {
			t.Fatalf("spec.username %q, want operator", csr.Spec.Username)
		}
		wantSigned(t, waitDecided(t, csr.Name), ca, "charlie", keyPEM, time.Hour, from, time.Now())
	})
}

// CSRs for other signers are never touched: neither reviewed nor, once approved by
// someone else, signed.
func TestSignerIgnoresOtherSigners(t *testing.T) {
	ca := newCA(t)
	admin := kubeClient(t, hub.Config)
	csrs := admin.CertificatesV1().CertificateSigningRequests()
	ctx := testContext(t)

	registerCluster(t, "delta")
	foreign := func() *certificatesv1.CertificateSigningRequest {
		r, _ := etcdRequest(t, "delta")
		r.signerName = "example.com/other"
		return createCSR(t, admin, r)
	}
	pending := foreign()
	approved := foreign()
	approved.Status.Conditions = append(approved.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "ByHand", Message: "approved by a person",
	})
	approved, err := csrs.UpdateApproval(ctx, approved.Name, approved, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("approve foreign CSR: %v", err)
	}

	startSigner(t, ca)
	// The signer handles CSRs in the order its watch delivers them: once it has
	// decided one created after the foreign ones, it has seen those too.
	barrier, _ := etcdRequest(t, "delta")
	wantSigned(t, waitDecided(t, createCSR(t, admin, barrier).Name), ca, "delta", nil, time.Hour, time.Now().Add(-waitFor), time.Now())

	for _, want := range []*certificatesv1.CertificateSigningRequest{pending, approved} {
		got, err := csrs.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.ResourceVersion != want.ResourceVersion || len(got.Status.Certificate) > 0 ||
			len(got.Status.Conditions) != len(want.Status.Conditions) {
			t.Errorf("foreign CSR %s touched: status %+v", got.Name, got.Status)
		}
	}
}

// The signer signs only certificates for clusters' etcd users, even when someone else
// approved the CSR: anyone allowed to approve for the signer would otherwise obtain a
// certificate for etcd's root user. It honours other approvals for cluster users.
func TestSignerSignsApprovedCSRsOnlyForClusterUsers(t *testing.T) {
	ca := newCA(t)
	admin := kubeClient(t, hub.Config)
	csrs := admin.CertificatesV1().CertificateSigningRequests()
	ctx := testContext(t)
	// No manager: the test approves first, then runs one reconcile, so that the
	// signer's own review cannot deny the CSR before it is approved.
	r := &signer.Reconciler{Client: adminClient(t), CA: ca}

	approveAndReconcile := func(t *testing.T, req request) *certificatesv1.CertificateSigningRequest {
		t.Helper()
		csr := createCSR(t, admin, req)
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "ByHand", Message: "approved by a person",
		})
		if _, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("approve: %v", err)
		}
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: csr.Name}}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		got, err := csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("root", func(t *testing.T) {
		req := customRequest(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root"}})
		got := approveAndReconcile(t, req)
		if len(got.Status.Certificate) > 0 {
			cert, _ := pki.ParseCert(got.Status.Certificate)
			t.Fatalf("signed a certificate for %q", cert.Subject.CommonName)
		}
		if c := condition(got, certificatesv1.CertificateFailed); c == nil || !strings.Contains(c.Message, `"root"`) {
			t.Errorf("Failed condition %+v, want one naming the common name", c)
		}
	})
	t.Run("cluster user", func(t *testing.T) {
		req, keyPEM := etcdRequest(t, "echo")
		from := time.Now()
		got := approveAndReconcile(t, req)
		if len(got.Status.Certificate) == 0 {
			t.Fatalf("approved CSR for a cluster user not signed: %+v", got.Status)
		}
		cert, err := pki.ParseCert(got.Status.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != hubinfo.EtcdUser("echo", testReg) {
			t.Errorf("CN %q", cert.Subject.CommonName)
		}
		if _, err := tls.X509KeyPair(got.Status.Certificate, keyPEM); err != nil {
			t.Error(err)
		}
		if cert.NotAfter.After(time.Now().Add(time.Hour)) || cert.NotAfter.Before(from.Add(time.Hour).Truncate(time.Second)) {
			t.Errorf("NotAfter %v, want an hour from now", cert.NotAfter)
		}
	})
	t.Run("other signer", func(t *testing.T) {
		req, _ := etcdRequest(t, "echo")
		req.signerName = "example.com/other"
		got := approveAndReconcile(t, req)
		if len(got.Status.Certificate) > 0 || len(got.Status.Conditions) != 1 {
			t.Errorf("Reconcile touched a CSR of another signer: %+v", got.Status)
		}
	})
}
