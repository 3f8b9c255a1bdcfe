package embedetcd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	return Options{DataDir: dir, UnsafeNoFsync: true, ZapLogger: zap.NewNop()}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Several servers in one process get distinct ports and serve independently.
func TestStartSeveral(t *testing.T) {
	var servers []*Server
	seen := map[string]bool{}
	for range 3 {
		s, err := Start(ctx(t), testOptions(t, t.TempDir()))
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s)
		for _, ep := range s.Endpoints() {
			if seen[ep] {
				t.Fatalf("endpoint %s used twice", ep)
			}
			seen[ep] = true
		}
	}
	for i, s := range servers {
		c, err := s.Client()
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		key := "/who"
		if _, err := c.Put(ctx(t), key, s.Endpoints()[0]); err != nil {
			t.Fatalf("server %d: Put: %v", i, err)
		}
		resp, err := c.Get(ctx(t), key)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != s.Endpoints()[0] {
			t.Fatalf("server %d: Get = %v, %v; want its own value", i, resp, err)
		}
		c.Close()
	}
}

// A server restarted on the same data directory keeps its keys and revision.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(ctx(t), testOptions(t, dir))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	put, err := c.Put(ctx(t), "/meshfed/v1/trust/bundle", "roots")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	c.Close()
	s.Close()
	s.Close() // idempotent

	s2, err := Start(ctx(t), testOptions(t, dir))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s2.Close()
	c2, err := s2.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	defer c2.Close()
	resp, err := c2.Get(ctx(t), "/meshfed/v1/trust/bundle")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "roots" {
		t.Fatalf("after restart got %v, want the value written before", resp.Kvs)
	}
	if resp.Kvs[0].ModRevision != put.Header.Revision {
		t.Fatalf("mod revision after restart %d, want %d", resp.Kvs[0].ModRevision, put.Header.Revision)
	}
}

func TestStartRequiresDataDir(t *testing.T) {
	if _, err := Start(ctx(t), Options{}); err == nil {
		t.Fatal("Start without DataDir succeeded")
	}
}

// A fixed port that is taken fails Start cleanly, without a retry loop.
func TestStartPortTaken(t *testing.T) {
	s, err := Start(ctx(t), testOptions(t, t.TempDir()))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	o := testOptions(t, t.TempDir())
	o.ClientURL = s.Endpoints()[0]
	if s2, err := Start(ctx(t), o); err == nil {
		s2.Close()
		t.Fatal("Start on a taken client port succeeded")
	}
}

// writeTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, and returns the client's TLS config.
func writeTestPKI(t *testing.T, dir string) *tls.Config {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	write("ca.crt", "CERTIFICATE", caDER)
	serverDER, serverKey := issue(2, "server", x509.ExtKeyUsageServerAuth)
	write("server.crt", "CERTIFICATE", serverDER)
	write("server.key", "EC PRIVATE KEY", keyDER(serverKey))
	clientDER, clientKey := issue(3, "root", x509.ExtKeyUsageClientAuth)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}},
		MinVersion:   tls.VersionTLS12,
	}
}

// With ClientTLS the server speaks only TLS and, with ClientCertAuth, only to
// clients with a certificate from the trusted CA.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	clientTLS := writeTestPKI(t, dir)
	o := testOptions(t, filepath.Join(dir, "data"))
	o.ClientTLS = &TLS{
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true,
	}
	s, err := Start(ctx(t), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	if ep := s.Endpoints()[0]; !strings.HasPrefix(ep, "https://127.0.0.1:") {
		t.Fatalf("endpoint %s, want https on loopback", ep)
	}
	if _, err := s.Client(); err == nil {
		t.Fatal("Client() without credentials succeeded on a TLS server")
	}

	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), TLS: clientTLS, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx(t), "/k", "v"); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}

	// Without a client certificate the handshake fails: bounded by a short
	// deadline, since the client waits for a usable connection.
	noCert := clientTLS.Clone()
	noCert.Certificates = nil
	c2, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), TLS: noCert, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer c2.Close()
	short, cancel := context.WithTimeout(ctx(t), 2*time.Second)
	defer cancel()
	if _, err := c2.Get(short, "/k"); err == nil {
		t.Fatal("Get without a client certificate succeeded")
	}
}

func TestSchemeMustMatchTLS(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.ClientURL = "https://127.0.0.1:0"
	if _, err := Start(ctx(t), o); err == nil {
		t.Error("https without ClientTLS accepted")
	}
	o.ClientURL = "http://127.0.0.1:0"
	o.ClientTLS = &TLS{CertFile: "x", KeyFile: "y"}
	if _, err := Start(ctx(t), o); err == nil {
		t.Error("http with ClientTLS accepted")
	}
}

// The quota and request limit reach etcd: Status reports the quota, and a
// request over the limit is refused.
func TestLimits(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.QuotaBackendBytes = 64 << 20
	o.MaxRequestBytes = 64 << 10
	s, err := Start(ctx(t), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	c, err := s.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	defer c.Close()
	st, err := c.Status(ctx(t), s.Endpoints()[0])
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.DbSizeQuota != o.QuotaBackendBytes {
		t.Errorf("quota = %d, want %d", st.DbSizeQuota, o.QuotaBackendBytes)
	}
	if _, err := c.Put(ctx(t), "/small", strings.Repeat("x", 32<<10)); err != nil {
		t.Errorf("Put under the request limit: %v", err)
	}
	if _, err := c.Put(ctx(t), "/big", strings.Repeat("x", 128<<10)); !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Errorf("Put over the request limit: err = %v, want %v", err, rpctypes.ErrRequestTooLarge)
	}
}

// Without Options the limits are etcd's defaults, stated explicitly.
func TestDefaultLimits(t *testing.T) {
	s, err := Start(ctx(t), testOptions(t, t.TempDir()))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	c, err := s.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	defer c.Close()
	st, err := c.Status(ctx(t), s.Endpoints()[0])
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.DbSizeQuota != DefaultQuotaBytes {
		t.Errorf("quota = %d, want %d", st.DbSizeQuota, DefaultQuotaBytes)
	}
}

func TestLimitsChecked(t *testing.T) {
	for name, mutate := range map[string]func(*Options){
		"quota over 8 GiB":          func(o *Options) { o.QuotaBackendBytes = 9 << 30 },
		"negative quota":            func(o *Options) { o.QuotaBackendBytes = -1 },
		"request larger than quota": func(o *Options) { o.QuotaBackendBytes = 1 << 20; o.MaxRequestBytes = 2 << 20 },
		"negative retention":        func(o *Options) { o.AutoCompactionRetention = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, t.TempDir())
			mutate(&o)
			if s, err := Start(ctx(t), o); err == nil {
				s.Close()
				t.Fatal("Start accepted it")
			}
		})
	}
}

// With AutoCompactionRetention etcd compacts its own history: a read at a
// revision older than the retention fails with ErrCompacted, the latest
// values stay.
func TestAutoCompaction(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.AutoCompactionRetention = time.Second
	s, err := Start(ctx(t), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	c, err := s.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	defer c.Close()
	first, err := c.Put(ctx(t), "/k", "v1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	// etcd's periodic compactor compacts to a revision it sampled a
	// retention ago, so writes must keep coming for it to move on.
	n := 1
	testutil.Eventually(t, 30*time.Second, "etcd compacted the first revision", func() error {
		n++
		if _, err := c.Put(ctx(t), "/k", fmt.Sprintf("v%d", n)); err != nil {
			return err
		}
		_, err := c.Get(ctx(t), "/k", clientv3.WithRev(first.Header.Revision))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return fmt.Errorf("Get at revision %d: err = %v, want ErrCompacted", first.Header.Revision, err)
		}
		return nil
	})
	resp, err := c.Get(ctx(t), "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != fmt.Sprintf("v%d", n) {
		t.Fatalf("latest value = %v, %v; want v%d", resp, err, n)
	}
}
