package e2e

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/trust"
)

// The identity attacks (issue 10, item 2): an attacker holding beta's member
// cluster takes its intermediate CA's key from the Secret the agent keeps it in and
// mints workload certificates. Only beta's own identities may verify: name
// constraints on beta's intermediate, which the hub required of beta's CSR and
// cert-manager copied into what it signed, make every X.509 verifier refuse the
// rest, and `meshfedctl trust check` says why.
func init() {
	addAttack("identity: beta's intermediate key mints only beta's identities", attackMintedIdentities)
}

func attackMintedIdentities(t *testing.T, w *attackWorld) {
	ctx := w.ctx
	beta := kubernetes.NewForConfigOrDie(w.s.Cluster("beta").Config())
	alpha := kubernetes.NewForConfigOrDie(w.s.Cluster("alpha").Config())

	// The stolen key and chain, as the agent keeps them in beta.
	var inter *x509.Certificate
	var interKey crypto.Signer
	testutil.Eventually(t, waitLong, "beta's agent holds a cluster-bound intermediate", func() error {
		sec, err := beta.CoreV1().Secrets(hubinfo.Namespace).Get(ctx, clusteragent.IntermediateSecret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(sec.Data[corev1.TLSCertKey]) == 0 {
			return errors.New("no chain yet")
		}
		if inter, err = pki.ParseCert(sec.Data[corev1.TLSCertKey]); err != nil {
			return err
		}
		if interKey, err = pki.ParseKey(sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
			return err
		}
		return trust.CheckIntermediateBound(inter)
	})
	// The victim's bundle: what alpha's workloads trust.
	cm, err := alpha.CoreV1().ConfigMaps(hubinfo.Namespace).Get(ctx, clusteragent.TrustBundleConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, td := []byte(cm.Data["ca.crt"]), cm.Data["trustDomain"]
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("alpha serves no trust bundle")
	}
	t.Logf("beta's intermediate: permitted URI domains %v, excluded DNS %q, IP %v, email %q, critical %v, path length %d",
		inter.PermittedURIDomains, inter.ExcludedDNSDomains, inter.ExcludedIPRanges, inter.ExcludedEmailAddresses,
		inter.PermittedDNSDomainsCritical, inter.MaxPathLen)

	tests := []struct {
		name, id string
		ok       bool
		// refusal is what `trust check` must say of a refused chain.
		refusal string
	}{
		{"beta's own cart", "spiffe://beta." + td + "/ns/shop/sa/cart", true, ""},
		{"the bare trust domain's cart", "spiffe://" + td + "/ns/shop/sa/cart", false, "may sign only spiffe://beta." + td + "/"},
		{"alpha's cart", "spiffe://alpha." + td + "/ns/shop/sa/cart", false, "may sign only spiffe://beta." + td + "/"},
		{"another trust domain's cart", "spiffe://example.org/ns/shop/sa/cart", false, "not permitted by any constraint"},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain := mintWithStolenKey(t, inter, interKey, tc.id)

			// 1. A grpc-go client in alpha verifies a server presenting the minted
			// chain as grpc-go's xDS credentials do: chain to alpha's bundle.
			server, err := serveChain(t, chain, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := callVerifying(ctx, server, roots, nil)
			if tc.ok && (err != nil || got != tc.id) {
				t.Fatalf("a client refused beta's legitimate %s: server %q, %v", tc.id, got, err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "not permitted") && !strings.Contains(err.Error(), "not authorized to sign")) {
				t.Fatalf("a client accepted a server presenting %s minted with beta's key: %v", tc.id, err)
			}
			t.Logf("server presenting %s: client says %v", tc.id, err)

			// 2. A server requiring clients of the mesh (crypto/tls against the
			// bundle, as the backends do) and a client presenting the minted chain.
			legit := mintWithStolenKey(t, inter, interKey, "spiffe://beta."+td+"/ns/shop/sa/server")
			mtlsServer, err := serveChain(t, legit, roots)
			if err != nil {
				t.Fatal(err)
			}
			peerID, err := callVerifying(ctx, mtlsServer, roots, &chain)
			if tc.ok && err != nil {
				t.Fatalf("a server refused beta's legitimate client %s: %v", tc.id, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("a server accepted a client presenting %s minted with beta's key (it saw %q)", tc.id, peerID)
			}

			// 3. meshfedctl trust check --cert, against the hub's roots.
			file := filepath.Join(dir, fmt.Sprintf("minted-%d.pem", i))
			if err := os.WriteFile(file, chain.pem, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(ctx, meshfedctlBin(), "trust", "check", "--dir", w.s.Dir, "--cert", file).CombinedOutput()
			t.Logf("meshfedctl trust check --cert (%s):\n%s", tc.id, out)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("trust check refused beta's legitimate %s: %v", tc.id, err)
			case !tc.ok && err == nil:
				t.Fatalf("trust check passed %s minted with beta's key", tc.id)
			case !tc.ok && !strings.Contains(string(out), tc.refusal):
				t.Fatalf("trust check output does not say %q", tc.refusal)
			}
		})
	}
}

// mintedChain is a leaf and beta's intermediate, with the leaf's key.
type mintedChain struct {
	pem  []byte
	cert tls.Certificate
}

// mintWithStolenKey signs, with the stolen intermediate key, a workload certificate
// for id: what the attacker can make, whatever the intermediate may sign.
func mintWithStolenKey(t *testing.T, inter *x509.Certificate, interKey crypto.Signer, id string) mintedChain {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, inter, key.Public(), interKey)
	if err != nil {
		t.Fatal(err)
	}
	return mintedChain{
		pem:  append(pki.EncodeCert(der), pki.EncodeCert(inter.Raw)...),
		cert: tls.Certificate{Certificate: [][]byte{der, inter.Raw}, PrivateKey: key},
	}
}

// serveChain starts a gRPC echo server on loopback presenting chain, answering with
// the chain's identity; with clientCAs it requires and verifies client certificates
// against them.
func serveChain(t *testing.T, chain mintedChain, clientCAs *x509.CertPool) (string, error) {
	t.Helper()
	leaf, err := x509.ParseCertificate(chain.cert.Certificate[0])
	if err != nil {
		return "", err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{chain.cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	meshecho.Register(s, leaf.URIs[0].String())
	go s.Serve(l) //nolint:errcheck
	t.Cleanup(s.Stop)
	return l.Addr().String(), nil
}

// callVerifying calls the echo server at addr with a grpc-go TLS client that verifies
// the server's chain as grpc-go's xDS client credentials do (x509 verification
// against roots with the presented intermediates, for server authentication; SPIFFE
// certificates name no host), presenting client when given. It returns the
// server's answer: its identity, or with client the client identity it saw.
func callVerifying(ctx context.Context, addr string, roots *x509.CertPool, client *mintedChain) (string, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // verified below, as grpc-go's xDS credentials do
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no server certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inters := x509.NewCertPool()
			for _, c := range certs[1:] {
				inters.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}}
	if client != nil {
		cfg.Certificates = []tls.Certificate{client.cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	server, peer, err := meshecho.CallPeer(cctx, conn)
	if client != nil {
		return peer, err
	}
	return server, err
}
