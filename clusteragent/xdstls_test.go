package clusteragent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
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
		{metrics, "/metrics", 200}, {metrics, "/debug/view", 404}, {debug, "/debug/view", 200}, {debug, "/metrics", 404},
	} {
		if got := get(c.addr, c.path); got != c.want {
			t.Errorf("GET %s%s = %d, want %d", c.addr, c.path, got, c.want)
		}
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
// them (the CSR's subject and SPIFFE ID copied into a CA certificate).
type testMesh struct {
	rootPEM       []byte
	alpha, beta   *trust.Intermediate
	alphaSecret   *corev1.Secret
	foreignLeaf   tls.Certificate
	alphaWorkload tls.Certificate
	betaWorkload  tls.Certificate
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
	m := &testMesh{rootPEM: rootPEM}
	intermediate := func(cluster string) (*trust.Intermediate, []byte, []byte) {
		csrPEM, keyPEM, err := trust.NewIntermediateCSR("meshfed.local", cluster)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := pki.ParseCSR(csrPEM)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()),
			Subject: csr.Subject, URIs: csr.URIs, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true},
			root, csr.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		chain := append(pki.EncodeCert(der), rootPEM...)
		ic, err := trust.LoadIntermediate(chain, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return ic, chain, keyPEM
	}
	var chain, keyPEM []byte
	m.alpha, chain, keyPEM = intermediate("alpha")
	m.alphaSecret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: IntermediateSecret, Namespace: "meshfed-system"},
		Data: map[string][]byte{corev1.TLSCertKey: chain, corev1.TLSPrivateKeyKey: keyPEM}}
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

// TestXDSTLS: the agent issues its xDS serving certificate from the intermediate in
// its Secret (none before the hub signed it: every handshake fails), for the names
// proxies dial; it accepts only client certificates issued by its own cluster's
// intermediate and chaining to the bundle.
func TestXDSTLS(t *testing.T) {
	m := newTestMesh(t)
	v := view.New(view.Options{Self: "alpha"})
	v.OnUpsert(keyspace.TrustBundle(), &model.TrustBundle{TrustDomain: "meshfed.local", Roots: string(m.rootPEM)})
	v.OnSynced()
	kube := fake.NewClientset()
	x := &xdsTLS{cluster: "alpha", namespace: "meshfed-system", kube: kube, view: v, names: DefaultXDSServerNames("meshfed-system"), log: testr.New(t)}

	lis, err := tls.Listen("tcp", "127.0.0.1:0", x.config())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }() //nolint:errcheck
		}
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.rootPEM)
	handshake := func(server string, cert *tls.Certificate) error {
		cfg := &tls.Config{RootCAs: roots, ServerName: server}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
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

	ctx := context.Background()
	if err := x.refresh(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := handshake("127.0.0.1", &m.alphaWorkload); err == nil {
		t.Fatal("a handshake succeeded before the intermediate was signed")
	}
	if _, err := kube.CoreV1().Secrets("meshfed-system").Create(ctx, m.alphaSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := x.refresh(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "localhost", "meshfed-agent.meshfed-system.svc"} {
		if err := handshake(name, &m.alphaWorkload); err != nil {
			t.Errorf("alpha's workload dialing %s: %v", name, err)
		}
	}
	if err := handshake("elsewhere.example", &m.alphaWorkload); err == nil {
		t.Error("the serving certificate verified for a name it does not carry")
	}
	for name, cert := range map[string]*tls.Certificate{
		"no certificate": nil, "beta's workload": &m.betaWorkload, "a foreign CA's certificate": &m.foreignLeaf,
	} {
		err := handshake("127.0.0.1", cert)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		t.Logf("%s: refused: %v", name, err)
	}
	// A renewal is due at two thirds of the lifetime: a new certificate, same names.
	first := x.cert.Load()
	if err := x.refresh(ctx, time.Now().Add(17*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if x.cert.Load() == first {
		t.Error("the serving certificate was not renewed at two thirds of its life")
	}
}
