package workloadtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/workloadtls"
)

// TestClientCredentials: the client presents the certificate in its directory, checks
// the server against the directory's xds-ca.crt (never ca.crt, the mesh's roots) and
// the dialed name, and takes renewed files at the next handshake.
func TestClientCredentials(t *testing.T) {
	mesh, err := pki.NewCA("mesh", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	xdsCA, err := pki.NewCA("meshfed xds alpha", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(mesh.Cert)
	seen := make(chan string, 4)
	// server is an agent whose serving certificate ca issued for 127.0.0.1.
	server := func(ca *pki.CA) string {
		serverCert, serverKey, err := ca.Issue(pki.ServerTemplate("server", "127.0.0.1"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(serverCert, serverKey)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, NextProtos: []string{"h2"}})
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
				tc := c.(*tls.Conn)
				if tc.Handshake() == nil {
					seen <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
				}
				c.Close()
			}
		}()
		return lis.Addr().String()
	}
	agent, impostor := server(xdsCA), server(mesh)

	dir := t.TempDir()
	write := func(cn string) {
		cert, key, err := mesh.Issue(pki.ClientTemplate(cn), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": mesh.CertPEM, workloadtls.XDSCAFile: xdsCA.CertPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	creds := workloadtls.ClientCredentials(dir)
	handshakeAt := func(addr, authority string) error {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err = creds.ClientHandshake(ctx, authority, raw)
		return err
	}
	handshake := func(authority string) error { return handshakeAt(agent, authority) }
	if err := handshake("127.0.0.1"); err == nil {
		t.Fatal("a handshake succeeded without files")
	}
	write("first")
	if err := handshake("127.0.0.1:443"); err != nil {
		t.Fatal(err)
	}
	if cn := <-seen; cn != "first" {
		t.Errorf("server saw %q, want first", cn)
	}
	write("renewed")
	if err := handshake("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if cn := <-seen; cn != "renewed" {
		t.Errorf("server saw %q after the renewal, want renewed", cn)
	}
	if err := handshake("elsewhere.example"); err == nil {
		t.Error("the server verified for a name its certificate does not carry")
	}
	// A server with a certificate from the mesh's CA (what a member's intermediate
	// could sign) is not the agent.
	if err := handshakeAt(impostor, "127.0.0.1"); err == nil {
		t.Error("the client accepted a server whose certificate the mesh's CA issued")
	}
}
