package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// tlsEchoEnv makes the test binary an mTLS echo server: "addr" with the PEM files
// named by tlsEchoDirEnv (ca.crt, tls.crt, tls.key); it answers with the common name
// of the client certificate it saw, then echoes.
const (
	tlsEchoEnv    = "MESHFED_E2E_TLS_ECHO"
	tlsEchoDirEnv = "MESHFED_E2E_TLS_DIR"
)

func tlsEcho(addr, dir string) {
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	l, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			tc := c.(*tls.Conn)
			if tc.Handshake() != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
			io.Copy(c, c) //nolint:errcheck
		}()
	}
}

// TestGatewayPassthrough: a cluster's east-west gateway, configured over xDS by its
// agent, routes a TLS connection by its SNI to a ready local endpoint without
// terminating it: the backend sees the client's certificate, the client verifies the
// backend's. An unknown SNI is closed.
func TestGatewayPassthrough(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 2, MeshfedBinary: meshfedBin(), Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)

	ca, err := pki.NewCA("e2e test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	host := testnet.New(t, 1)
	backend := host.Addr(0).String()
	dir := t.TempDir()
	srvCert, srvKey, _ := ca.Issue(pki.ServerTemplate("payments backend", backend), time.Hour)
	for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": srvCert, "tls.key": srvKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host.Start(t, "tls-echo", []string{meshfedTestBinary(t)}, tlsEchoEnv+"="+net.JoinHostPort(backend, "8443"), tlsEchoDirEnv+"="+dir)

	beta := s.Cluster("beta")
	svc := &service{namespace: "pay", name: "payments", port: 8443, endpoints: []endpoint{ready(backend, beta.Zones[0])}}
	if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(beta.Config())); err != nil {
		t.Fatal(err)
	}
	hub := hubClient(t, s)
	if err := hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pay"}}); err != nil {
		t.Fatal(err)
	}
	if err := hub.Create(ctx, &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "payments"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8443, Protocol: v1.ProtocolTLS}}}}); err != nil {
		t.Fatal(err)
	}

	cliCert, cliKey, _ := ca.Issue(pki.ClientTemplate("spiffe-client-alpha"), time.Hour)
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	dial := func(sni string) (string, error) {
		raw, err := net.DialTimeout("tcp", beta.GatewayAddr, 5*time.Second)
		if err != nil {
			return "", err
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
		c := tls.Client(raw, &tls.Config{ServerName: sni, RootCAs: roots, Certificates: []tls.Certificate{pair},
			MinVersion: tls.VersionTLS13,
			// The backend's certificate names its address, not the SNI the gateway routes on.
			VerifyConnection: func(cs tls.ConnectionState) error {
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots})
				return err
			},
			InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection above
		})
		line := make([]byte, 64)
		n, err := c.Read(line)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(line[:n])), nil
	}

	sni := xdsnames.SNI("payments.pay.svc.clusterset.local", 8443)
	testutil.Eventually(t, waitLong, "mTLS through beta's gateway", func() error {
		got, err := dial(sni)
		if err != nil {
			return err
		}
		if got != "hello spiffe-client-alpha" {
			return fmt.Errorf("backend said %q", got)
		}
		return nil
	})

	if _, err := dial(xdsnames.SNI("nothing.pay.svc.clusterset.local", 8443)); err == nil {
		t.Error("a connection for an unknown SNI was not closed")
	}
}
