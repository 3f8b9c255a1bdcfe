package agentcreds

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// testCredentials are complete credentials whose certificate lives for lifetime.
func testCredentials(t *testing.T, lifetime time.Duration) Credentials {
	t.Helper()
	ca, err := pki.NewCA("test-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.ClientTemplate(hubinfo.EtcdUser("alpha", "")), lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{Cluster: "alpha", Etcd: etcdconn.Credentials{
		Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
		CA:        ca.CertPEM, Cert: certPEM, Key: keyPEM,
	}}
}

func TestSecretRoundTrip(t *testing.T) {
	want := testCredentials(t, time.Hour)
	s := want.Secret("agents")
	if s.Name != SecretName || s.Namespace != "agents" || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret %s/%s of type %s, want agents/%s, Opaque", s.Namespace, s.Name, s.Type, SecretName)
	}
	if s.Labels["app.kubernetes.io/part-of"] != "meshfed" {
		t.Errorf("labels %v, want part-of meshfed", s.Labels)
	}
	if got := string(s.Data[KeyEndpoints]); got != "https://10.0.0.1:2379,https://10.0.0.2:2379" {
		t.Errorf("endpoints %q, want them comma-separated", got)
	}
	if _, ok := s.Data[corev1.TLSCertKey]; !ok {
		t.Errorf("no %s: the Secret must be usable as a TLS key pair", corev1.TLSCertKey)
	}
	got, err := FromSecret(s)
	if err != nil {
		t.Fatalf("FromSecret: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	cert, err := got.Certificate()
	if err != nil || cert.Subject.CommonName != hubinfo.EtcdUser("alpha", "") {
		t.Errorf("Certificate() = %v, %v; want the client certificate", cert, err)
	}
}

// Endpoints are trimmed and empty ones dropped, for Secrets written by hand.
func TestFromSecretTrimsEndpoints(t *testing.T) {
	s := testCredentials(t, time.Hour).Secret("agents")
	s.Data[KeyEndpoints] = []byte(" https://a:2379 , ,https://b:2379,")
	got, err := FromSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"https://a:2379", "https://b:2379"}, got.Etcd.Endpoints); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
}

func TestFromSecretErrors(t *testing.T) {
	other := testCredentials(t, time.Hour)
	for name, tc := range map[string]struct {
		edit func(data map[string][]byte)
		want []string
	}{
		"no cluster":          {func(d map[string][]byte) { delete(d, KeyCluster) }, []string{KeyCluster}},
		"no endpoints":        {func(d map[string][]byte) { delete(d, KeyEndpoints) }, []string{KeyEndpoints}},
		"only commas":         {func(d map[string][]byte) { d[KeyEndpoints] = []byte(" , ") }, []string{KeyEndpoints}},
		"no CA":               {func(d map[string][]byte) { delete(d, KeyCA) }, []string{KeyCA}},
		"no certificate":      {func(d map[string][]byte) { delete(d, KeyCert) }, []string{KeyCert}},
		"no key":              {func(d map[string][]byte) { delete(d, KeyKey) }, []string{KeyKey}},
		"empty cluster":       {func(d map[string][]byte) { d[KeyCluster] = nil }, []string{KeyCluster}},
		"CA not PEM":          {func(d map[string][]byte) { d[KeyCA] = []byte("junk") }, []string{"no CA certificate"}},
		"key of another cert": {func(d map[string][]byte) { d[KeyKey] = other.Etcd.Key }, []string{"private key does not match"}},
		"certificate not PEM": {func(d map[string][]byte) { d[KeyCert] = []byte("junk") }, []string{"etcd credentials"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := testCredentials(t, time.Hour).Secret("agents")
			tc.edit(s.Data)
			_, err := FromSecret(s)
			if err == nil {
				t.Fatal("FromSecret accepted incomplete credentials")
			}
			for _, w := range append(tc.want, "agents/"+SecretName) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	want := testCredentials(t, time.Hour)
	if _, err := Load(ctx, fake.NewClientset(), "agents"); err == nil || !strings.Contains(err.Error(), "read etcd credentials") {
		t.Errorf("Load without a Secret: %v, want a read error", err)
	}
	kube := fake.NewClientset(want.Secret("agents"))
	got, err := Load(ctx, kube, "agents")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if _, err := Load(ctx, kube, "elsewhere"); err == nil {
		t.Error("Load found the Secret in another namespace")
	}
	bad := want.Secret("broken")
	delete(bad.Data, KeyKey)
	if _, err := kube.CoreV1().Secrets("broken").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, kube, "broken"); err == nil || !strings.Contains(err.Error(), KeyKey) {
		t.Errorf("Load of an incomplete Secret: %v, want an error naming %s", err, KeyKey)
	}
}

// Credentials are fresh from just after NotBefore until a third of their life is
// left, exclusive at both ends.
func TestFresh(t *testing.T) {
	c := testCredentials(t, 3*time.Hour)
	cert, err := c.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	nb, na := cert.NotBefore, cert.NotAfter
	third := na.Sub(nb) / 3
	for name, tc := range map[string]struct {
		now  time.Time
		want bool
	}{
		"before NotBefore":         {nb.Add(-time.Second), false},
		"at NotBefore":             {nb, false},
		"just after NotBefore":     {nb.Add(time.Nanosecond), true},
		"halfway":                  {nb.Add(na.Sub(nb) / 2), true},
		"just before a third left": {na.Add(-third - time.Nanosecond), true},
		"a third left":             {na.Add(-third), false},
		"less than a third left":   {na.Add(-third + time.Second), false},
		"at NotAfter":              {na, false},
		"expired":                  {na.Add(time.Hour), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.Fresh(tc.now); got != tc.want {
				t.Errorf("Fresh(%v) = %v, want %v (valid %v to %v)", tc.now, got, tc.want, nb, na)
			}
		})
	}

	c.Etcd.Cert = []byte("junk")
	if c.Fresh(nb.Add(time.Minute)) {
		t.Error("credentials with an unreadable certificate are fresh")
	}
}

// StoreCertificate replaces exactly the certificate and key; it refuses a pair for
// another etcd user or whose key is not the certificate's, and leaves the Secret be.
func TestStoreCertificate(t *testing.T) {
	ctx := context.Background()
	cur := testCredentials(t, time.Hour)
	kube := fake.NewClientset(cur.Secret("agents"))
	other := testCredentials(t, time.Hour) // another CA, same user: the key check still applies
	beta := other
	beta.Etcd.Cert, beta.Etcd.Key = issueFor(t, hubinfo.EtcdUser("beta", ""))
	for name, pair := range map[string][2][]byte{
		"another user": {beta.Etcd.Cert, beta.Etcd.Key},
		"another registration": func() [2][]byte {
			c, k := issueFor(t, hubinfo.EtcdUser("alpha", hubinfo.NewRegistration()))
			return [2][]byte{c, k}
		}(),
		"key of another":    {other.Etcd.Cert, cur.Etcd.Key},
		"not a certificate": {[]byte("junk"), other.Etcd.Key},
	} {
		if err := StoreCertificate(ctx, kube, "agents", pair[0], pair[1]); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	got, err := Load(ctx, kube, "agents")
	if err != nil || !cmp.Equal(got, cur) {
		t.Fatalf("refused stores changed the Secret: %v", err)
	}

	if err := StoreCertificate(ctx, kube, "agents", other.Etcd.Cert, other.Etcd.Key); err != nil {
		t.Fatalf("StoreCertificate: %v", err)
	}
	got, err = Load(ctx, kube, "agents")
	if err != nil {
		t.Fatal(err)
	}
	want := cur
	want.Etcd.Cert, want.Etcd.Key = other.Etcd.Cert, other.Etcd.Key
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after StoreCertificate (-want +got):\n%s", diff)
	}
}

func issueFor(t *testing.T, user string) (certPEM, keyPEM []byte) {
	t.Helper()
	ca, err := pki.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err = ca.Issue(pki.ClientTemplate(user), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}
