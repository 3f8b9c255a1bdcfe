package clusteragent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/workloadtls"
	"github.com/meshfed/meshfed/trust"
)

// TestXDSDefaults: nothing is served unauthenticated beyond loopback unless asked, and
// a mistake is an error that says what to do.
func TestXDSDefaults(t *testing.T) {
	for name, tc := range map[string]struct {
		in               Options
		wantAuth, wantAt string
		wantErr          string
		wantName         string
	}{
		"no mesh CA: loopback":               {in: Options{}, wantAuth: XDSAuthNone, wantAt: "127.0.0.1:15010"},
		"--mtls: mTLS on every interface":    {in: Options{MTLS: true}, wantAuth: XDSAuthMTLS, wantAt: ":15010", wantName: "meshfed-agent.meshfed-system.svc"},
		"mTLS on an IP: the IP is a name":    {in: Options{XDSAuth: "mtls", XDSAddr: "10.1.2.3:15010"}, wantAuth: XDSAuthMTLS, wantAt: "10.1.2.3:15010", wantName: "10.1.2.3"},
		"none beyond loopback is refused":    {in: Options{XDSAddr: ":15010"}, wantErr: "--xds-insecure-listen"},
		"none on a pod IP is refused":        {in: Options{XDSAuth: "none", XDSAddr: "10.1.2.3:15010"}, wantErr: "not a loopback address"},
		"none beyond loopback when asked":    {in: Options{XDSAddr: ":15010", XDSInsecureListen: true}, wantAuth: XDSAuthNone, wantAt: ":15010"},
		"none on localhost":                  {in: Options{XDSAddr: "localhost:1"}, wantAuth: XDSAuthNone, wantAt: "localhost:1"},
		"an unknown mode":                    {in: Options{XDSAuth: "token"}, wantErr: `--xds-auth "token": use mtls or none`},
		"none with --mtls keeps it explicit": {in: Options{MTLS: true, XDSAuth: "none"}, wantAuth: XDSAuthNone, wantAt: "127.0.0.1:15010"},
	} {
		t.Run(name, func(t *testing.T) {
			o := tc.in
			o.Namespace = "meshfed-system"
			err := o.setXDSDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.XDSAuth != tc.wantAuth || o.XDSAddr != tc.wantAt {
				t.Errorf("auth %s at %s, want %s at %s", o.XDSAuth, o.XDSAddr, tc.wantAuth, tc.wantAt)
			}
			if tc.wantName != "" && !contains(o.XDSServerNames, tc.wantName) {
				t.Errorf("server names %v lack %s", o.XDSServerNames, tc.wantName)
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestHTTPSurfaces: /metrics and /debug are on loopback by default and apart from the
// probes; surfaces given one address share its listener; "0" turns one off.
func TestHTTPSurfaces(t *testing.T) {
	if !isLoopback(DefaultMetricsAddr) || !isLoopback(DefaultDebugAddr) {
		t.Fatalf("defaults %s and %s are not loopback", DefaultMetricsAddr, DefaultDebugAddr)
	}

	v := view.New(view.Options{Self: "alpha"})
	v.OnSynced()
	sf := debugSurfaces("alpha", v, nil, prometheus.NewRegistry())
	get := func(addr, path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
		return resp.StatusCode
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	run := func(servers map[string]func(context.Context) error) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		for _, serve := range servers {
			go serve(ctx) //nolint:errcheck
		}
	}

	health, metrics, debug := free(), free(), free()
	servers, err := listenHTTP(Options{HTTPAddr: health, MetricsAddr: metrics, DebugAddr: debug}, sf, testr.New(t))
	if err != nil || len(servers) != 3 {
		t.Fatalf("listenHTTP = %d servers, %v; want 3", len(servers), err)
	}
	run(servers)
	for _, c := range []struct {
		addr, path string
		want       int
	}{
		{health, "/readyz", 200}, {health, "/metrics", 404}, {health, "/debug/view", 404},
		{metrics, "/metrics", 200}, {metrics, "/debug/view", 404}, {debug, "/debug/view", 200},
		// The debug address serves /metrics too: one port-forward for meshfedctl check.
		{debug, "/metrics", 200},
	} {
		if got := get(c.addr, c.path); got != c.want {
			t.Errorf("GET %s%s = %d, want %d", c.addr, c.path, got, c.want)
		}
	}

	shared := free()
	servers, err = listenHTTP(Options{HTTPAddr: free(), MetricsAddr: shared, DebugAddr: shared}, sf, logr.Discard())
	if err != nil || len(servers) != 2 {
		t.Fatalf("listenHTTP with metrics and debug on one address = %d servers, %v; want 2", len(servers), err)
	}
	run(servers)
	if get(shared, "/metrics") != 200 || get(shared, "/debug/view") != 200 {
		t.Errorf("metrics and debug on one listener: /metrics %d, /debug/view %d", get(shared, "/metrics"), get(shared, "/debug/view"))
	}

	one := free()
	servers, err = listenHTTP(Options{HTTPAddr: one, MetricsAddr: one, DebugAddr: "0"}, sf, logr.Discard())
	if err != nil || len(servers) != 1 {
		t.Fatalf("listenHTTP = %d servers, %v; want 1", len(servers), err)
	}
	run(servers)
	if get(one, "/metrics") != 200 || get(one, "/healthz") != 200 || get(one, "/debug/view") != 404 {
		t.Errorf("one shared listener with debug off: /metrics %d, /healthz %d, /debug/view %d", get(one, "/metrics"), get(one, "/healthz"), get(one, "/debug/view"))
	}
}

// testMesh is a root and the intermediates of alpha and beta, made as the hub makes
// them: from the agent's CSR (trust.NewIntermediateCSR), its subject, SPIFFE ID and
// name constraints copied into a CA certificate, as cert-manager does. They can sign
// only their cluster's SPIFFE IDs, no DNS name or IP.
type testMesh struct {
	rootPEM              []byte
	alpha, beta          *trust.Intermediate
	alphaChain, alphaKey []byte
	foreignLeaf          tls.Certificate
	alphaWorkload        tls.Certificate
	betaWorkload         tls.Certificate
	alphaBundle          *model.TrustBundle
}

func newTestMesh(t *testing.T) *testMesh {
	t.Helper()
	now := time.Now()
	rootPEM, rootKeyPEM, err := trust.NewRoot("meshfed.local", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.ParseCert(rootPEM)
	rootKey, _ := pki.ParseKey(rootKeyPEM)
	m := &testMesh{rootPEM: rootPEM, alphaBundle: &model.TrustBundle{TrustDomain: "meshfed.local", Roots: string(rootPEM)}}
	intermediate := func(cluster string) (*trust.Intermediate, []byte, []byte) {
		csrPEM, keyPEM, err := trust.NewIntermediateCSR("meshfed.local", cluster)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := pki.ParseCSR(csrPEM)
		var extra []pkix.Extension
		for _, e := range csr.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) { // name constraints
				extra = append(extra, e)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()),
			Subject: csr.Subject, URIs: csr.URIs, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
			ExtraExtensions: extra}, root, csr.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := trust.CheckIntermediateBound(mustCert(t, pki.EncodeCert(der))); err != nil {
			t.Fatalf("the test intermediate is not bound like the hub's: %v", err)
		}
		chain := append(pki.EncodeCert(der), rootPEM...)
		ic, err := trust.LoadIntermediate(chain, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return ic, chain, keyPEM
	}
	m.alpha, m.alphaChain, m.alphaKey = intermediate("alpha")
	m.beta, _, _ = intermediate("beta")
	workload := func(ic *trust.Intermediate) tls.Certificate {
		c, k, err := trust.IssueWorkload(ic, "meshfed.local", "shop", "cart", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	m.alphaWorkload, m.betaWorkload = workload(m.alpha), workload(m.beta)
	foreign, err := pki.NewCA("foreign", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := foreign.Issue(pki.ClientTemplate("proxy"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if m.foreignLeaf, err = tls.X509KeyPair(c, k); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIntermediateCannotServeXDS is why the agent has an xDS serving CA of its own: a
// serving certificate for the names proxies dial, issued by the cluster's
// (name-constrained) intermediate, verifies nowhere.
func TestIntermediateCannotServeXDS(t *testing.T) {
	m := newTestMesh(t)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.ServerTemplate("meshfed-agent xDS alpha", DefaultXDSServerNames("meshfed-system")...)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(1), time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.alpha.Cert, key.Public(), m.alpha.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(m.rootPEM)
	inter.AddCert(m.alpha.Cert)
	for _, name := range []string{"meshfed-agent.meshfed-system.svc", "127.0.0.1"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
		if err == nil || !strings.Contains(err.Error(), "excluded by constraint") {
			t.Errorf("a serving certificate for %s from alpha's intermediate: %v, want a name constraints refusal", name, err)
		}
	}
}

// TestXDSTLS, against a real API server with two agent replicas and the workload
// certificate directory the leader writes: the first replica to find no xDS serving
// CA makes it, the other uses the same; both serve certificates from it for the names
// proxies dial; a proxy verifies the agent against xds-ca.crt only (the mesh's roots
// do not vouch for an agent); the agent accepts only client certificates issued by
// its own cluster's (name-constrained) intermediate. Renewal, and rotation by
// deleting the Secret, never leave a proxy unable to verify a replica.
func TestXDSTLS(t *testing.T) {
	cp := localkube.ForTest(t, "alpha")[0]
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	ctx := context.Background()
	const ns = "meshfed-system"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := newTestMesh(t)
	v := view.New(view.Options{Self: "alpha"})
	v.OnUpsert(keyspace.TrustBundle(), m.alphaBundle)
	v.OnSynced()
	replica := func(name string) *xdsTLS {
		return &xdsTLS{cluster: "alpha", namespace: ns, kube: kube, view: v, names: DefaultXDSServerNames(ns), log: testr.New(t).WithName(name)}
	}
	x1, x2 := replica("replica-1"), replica("replica-2")
	serve := func(x *xdsTLS) string {
		lis, err := tls.Listen("tcp", "127.0.0.1:0", x.config())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				go func() { c.(*tls.Conn).Handshake(); c.Close() }() //nolint:errcheck
			}
		}()
		return lis.Addr().String()
	}
	addr1, addr2 := serve(x1), serve(x2)
	pool := func(pemData []byte) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pemData) {
			t.Fatal("no certificate in the pool's PEM")
		}
		return p
	}
	handshake := func(addr, server string, roots *x509.CertPool, cert *tls.Certificate) error {
		cfg := &tls.Config{RootCAs: roots, ServerName: server}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3: the server's verdict on the client certificate arrives with the
		// first read.
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		_, err = c.Read(make([]byte, 1))
		if err == io.EOF {
			return nil
		}
		return err
	}
	published := func() []byte {
		cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, XDSCAConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(cm.Data["ca.crt"])
	}
	caCount := func() int {
		certs, err := trust.ParseCertificates(published())
		if err != nil {
			t.Fatal(err)
		}
		return len(certs)
	}

	if err := handshake(addr1, "127.0.0.1", x509.NewCertPool(), &m.alphaWorkload); err == nil {
		t.Fatal("a handshake succeeded before the agent had a serving certificate")
	}
	// Both replicas start at once: one CA.
	errs := make(chan error, 2)
	for _, x := range []*xdsTLS{x1, x2} {
		go func() { errs <- x.refresh(ctx, time.Now()) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(x1.cert.Load().ca, x2.cert.Load().ca) {
		t.Fatal("the replicas issued from two xDS CAs")
	}
	firstCA := x1.cert.Load().ca
	if !bytes.Equal(published(), firstCA) {
		t.Fatalf("%s/%s holds\n%s\nwant the CA\n%s", ns, XDSCAConfigMap, published(), firstCA)
	}
	if ca := mustCert(t, firstCA); ca.Subject.CommonName != "meshfed xds alpha" || ca.NotAfter.Before(time.Now().Add(9*365*24*time.Hour)) {
		t.Errorf("xDS CA %q until %s, want \"meshfed xds alpha\", about 10 years", ca.Subject.CommonName, ca.NotAfter)
	}

	// The leader writes xds-ca.crt beside every workload certificate; the proxy's
	// credentials (workloadtls) verify the agent with it, for every name it dials.
	dir := t.TempDir()
	ts := &trustSync{cluster: "alpha", namespace: ns, kube: kube, view: v,
		workloads: WorkloadCerts{Dir: dir, Identities: []string{"shop/cart"}, Lifetime: time.Hour}, log: testr.New(t)}
	writeWorkloads := func() {
		t.Helper()
		xdsCA, err := ts.xdsCA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.issueWorkloads(m.alphaChain, m.alphaKey, m.alphaBundle, xdsCA); err != nil {
			t.Fatal(err)
		}
	}
	writeWorkloads()
	cartDir := filepath.Join(dir, "shop", "cart")
	if got, _ := os.ReadFile(filepath.Join(cartDir, workloadtls.XDSCAFile)); !bytes.Equal(got, firstCA) {
		t.Fatalf("%s holds\n%s\nwant the xDS CA", workloadtls.XDSCAFile, got)
	}
	proxy := func(addr, authority string) error {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer raw.Close()
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, _, err := workloadtls.ClientCredentials(cartDir).ClientHandshake(hctx, authority, raw)
		if err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		if _, err = conn.Read(make([]byte, 1)); err == io.EOF {
			return nil
		}
		return err
	}
	for _, addr := range []string{addr1, addr2} {
		for _, name := range []string{"127.0.0.1", "localhost", "meshfed-agent.meshfed-system.svc"} {
			if err := proxy(addr, name); err != nil {
				t.Errorf("alpha's workload (its directory's credentials) dialing %s at %s: %v", name, addr, err)
			}
		}
	}
	if err := proxy(addr1, "elsewhere.example"); err == nil {
		t.Error("the serving certificate verified for a name it does not carry")
	}
	if err := handshake(addr1, "127.0.0.1", pool(m.rootPEM), &m.alphaWorkload); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a client trusting the mesh's roots verified the agent: %v (the mesh's CAs must not vouch for an agent)", err)
	}

	// Clients the agent refuses: the refusal is the agent's (a remote alert), the
	// client having verified the agent.
	for name, cert := range map[string]*tls.Certificate{
		"no certificate": nil, "beta's workload": &m.betaWorkload, "a foreign CA's certificate": &m.foreignLeaf,
	} {
		err := handshake(addr1, "127.0.0.1", pool(firstCA), cert)
		if err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("%s: %v, want the agent to refuse it", name, err)
		}
		t.Logf("%s: refused: %v", name, err)
	}

	// A renewal is due at two thirds of the lifetime: a new certificate, same CA.
	first := x1.cert.Load()
	if err := x1.refresh(ctx, time.Now().Add(17*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if renewed := x1.cert.Load(); renewed == first || !bytes.Equal(renewed.ca, firstCA) {
		t.Error("the serving certificate was not renewed at two thirds of its life, from the same CA")
	}

	// Rotation: delete the Secret. The next replica makes a new CA and publishes it
	// beside the old; replicas keep serving from the old one until the new had time
	// to reach proxies' files (xdsCAAdopt), then switch.
	if err := kube.CoreV1().Secrets(ns).Delete(ctx, XDSCASecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, x := range []*xdsTLS{x2, x1} {
		if err := x.refresh(ctx, now); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x.cert.Load().ca, firstCA) {
			t.Error("a replica served from the new CA before proxies could have it")
		}
	}
	if n := caCount(); n != 2 {
		t.Fatalf("%s/%s holds %d CAs during the rotation, want the new and the old", ns, XDSCAConfigMap, n)
	}
	if bytes.HasPrefix(published(), firstCA) {
		t.Error("the old CA is still first in the ConfigMap")
	}
	writeWorkloads()
	if got, _ := os.ReadFile(filepath.Join(cartDir, workloadtls.XDSCAFile)); !bytes.Equal(got, published()) {
		t.Errorf("%s was not rewritten with both CAs", workloadtls.XDSCAFile)
	}
	for _, x := range []*xdsTLS{x1, x2} {
		if err := x.refresh(ctx, now.Add(xdsCAAdopt+time.Second)); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(x.cert.Load().ca, firstCA) {
			t.Error("a replica still serves from the old CA once the new one is adopted")
		}
	}
	for _, addr := range []string{addr1, addr2} {
		if err := proxy(addr, "127.0.0.1"); err != nil {
			t.Errorf("after the rotation, the proxy dialing %s: %v", addr, err)
		}
	}
	// A replica that has not seen the new CA yet does not drop it from the ConfigMap.
	if err := x1.publishCA(ctx, mustCert(t, firstCA), now); err != nil {
		t.Fatal(err)
	}
	if n := caCount(); n != 2 {
		t.Errorf("a replica behind the rotation left %d CAs in the ConfigMap, want 2", n)
	}
	// Once no serving certificate from the old CA can be valid, it leaves.
	if err := x1.refresh(ctx, now.Add(xdsCAOverlap+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := caCount(); n != 1 || !bytes.Equal(published(), x1.cert.Load().ca) {
		t.Errorf("%d CAs in the ConfigMap after the overlap, want the new one alone", n)
	}

	t.Run("a broken Secret says what to do", func(t *testing.T) {
		sec, err := kube.CoreV1().Secrets(ns).Get(ctx, XDSCASecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sec.Data[corev1.TLSPrivateKeyKey] = []byte("garbage")
		if _, err := kube.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		err = replica("replica-3").refresh(ctx, time.Now())
		if err == nil || !strings.Contains(err.Error(), "delete the Secret") {
			t.Errorf("refresh = %v, want an error saying to delete the Secret", err)
		}
	})
}
