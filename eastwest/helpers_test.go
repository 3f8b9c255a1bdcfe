package eastwest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/xdsnames"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// testPKI is a mesh CA and the identities the tests use, SPIFFE style: the client
// and the backend verify each other's URI SAN against the CA, not a host name.
type testPKI struct {
	pool           *x509.CertPool
	client, server tls.Certificate
	clientID       string
	serverID       string
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "meshfed test root"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		p := &testPKI{pool: x509.NewCertPool(),
			clientID: "spiffe://mesh.test/ns/shop/sa/frontend",
			serverID: "spiffe://mesh.test/ns/shop/sa/cart",
		}
		p.pool.AddCert(ca)
		leaf := func(serial int64, id string, usage x509.ExtKeyUsage) tls.Certificate {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			u, _ := url.Parse(id)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(serial),
				NotBefore:    time.Now().Add(-time.Hour),
				NotAfter:     time.Now().Add(24 * time.Hour),
				URIs:         []*url.URL{u},
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
			if err != nil {
				panic(err)
			}
			return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		}
		p.client = leaf(2, p.clientID, x509.ExtKeyUsageClientAuth)
		p.server = leaf(3, p.serverID, x509.ExtKeyUsageServerAuth)
		pkiVal = p
	})
	return pkiVal
}

// verifyPeer checks a peer chain against the CA and its URI SAN, as a mesh proxy does.
func (p *testPKI) verifyPeer(wantID string, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID {
			return fmt.Errorf("peer identity %v, want %s", leaf.URIs, wantID)
		}
		return nil
	}
}

// clientConfig is a mesh client's TLS: its certificate, the SNI, verification of the
// server's SPIFFE identity.
func (p *testPKI) clientConfig(sni string) *tls.Config {
	return &tls.Config{
		ServerName:         sni,
		Certificates:       []tls.Certificate{p.client},
		InsecureSkipVerify: true, // replaced by VerifyConnection: identities are URIs, not host names
		VerifyConnection:   p.verifyPeer(p.serverID, x509.ExtKeyUsageServerAuth),
		MinVersion:         tls.VersionTLS13,
	}
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{p.server},
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true,
		VerifyConnection:   p.verifyPeer(p.clientID, x509.ExtKeyUsageClientAuth),
		MinVersion:         tls.VersionTLS13,
	}
}

// peerInfo is what a backend saw of one connection.
type peerInfo struct {
	SNI      string
	ClientID string
}

// backend is a TLS echo server requiring client certificates: the mesh endpoint
// behind the gateway.
type backend struct {
	ln     net.Listener
	name   string
	seen   chan peerInfo
	conns  atomic.Int64
	wg     sync.WaitGroup
	handle func(*tls.Conn) // default: echo until EOF, then close
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, name: name, seen: make(chan peerInfo, 4096)}
	b.handle = func(c *tls.Conn) { io.Copy(c, c) } //nolint:errcheck
	cfg := getPKI(t).serverConfig()
	b.wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.wg.Go(func() {
				defer raw.Close()
				c := tls.Server(raw, cfg)
				c.SetDeadline(time.Now().Add(2 * time.Minute)) //nolint:errcheck
				if err := c.Handshake(); err != nil {
					return
				}
				cs := c.ConnectionState()
				info := peerInfo{SNI: cs.ServerName}
				if len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].URIs) > 0 {
					info.ClientID = cs.PeerCertificates[0].URIs[0].String()
				}
				select {
				case b.seen <- info:
				default:
				}
				// Tell the client which backend it reached, then serve.
				if _, err := c.Write([]byte(b.name + "\n")); err != nil {
					return
				}
				b.handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *backend) addr() netip.AddrPort { return netip.MustParseAddrPort(b.ln.Addr().String()) }

// startGateway runs a gateway on 127.0.0.1 with routes, and shuts it down at the end.
func startGateway(t testing.TB, opts Options, routes Routes) (*Gateway, string) {
	t.Helper()
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if routes != nil {
		if err := gw.SetRoutes(routes); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Serve ends with the Close below: cleanups run last-registered first, so Close
	// runs before Run's cleanup waits for Serve.
	testutil.Run(t, "gateway", func(context.Context) error {
		if err := gw.Serve(ln); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Serve returned %v, want ErrClosed", err)
		}
		return nil
	})
	t.Cleanup(func() { gw.Close() }) //nolint:errcheck
	return gw, ln.Addr().String()
}

// dialTLS connects to addr with the mesh client's TLS and reads the backend's name.
func dialTLS(t testing.TB, addr, sni string) (*tls.Conn, string) {
	t.Helper()
	c, name, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
	if err != nil {
		t.Fatalf("dial %s with SNI %s: %v", addr, sni, err)
	}
	return c, name
}

func tryDialTLS(addr, sni string, cfg *tls.Config) (*tls.Conn, string, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	return tryHandshake(raw, cfg)
}

// tryHandshake does cfg's handshake over raw (closing it on failure) and reads the
// backend's name.
func tryHandshake(raw net.Conn, cfg *tls.Config) (*tls.Conn, string, error) {
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(time.Minute)) //nolint:errcheck
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, "", err
	}
	line := make([]byte, 0, 32)
	buf := make([]byte, 1)
	for {
		if _, err := c.Read(buf); err != nil {
			raw.Close()
			return nil, "", fmt.Errorf("read backend name: %w", err)
		}
		if buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	return c, string(line), nil
}

// echo writes msg and reads it back.
func echo(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func echoErr(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// expectClosed checks that the gateway closes c without sending anything, in time.
func expectClosed(t testing.TB, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within)) //nolint:errcheck
	n, err := io.Copy(io.Discard, c)
	if n != 0 {
		t.Errorf("the gateway sent %d bytes before closing", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

// rawHello returns the ClientHello records a crypto/tls client sends with cfg.
func rawHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go tls.Client(client, cfg).Handshake() //nolint:errcheck // ends when the pipe closes
	hdr := make([]byte, 5)
	server.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// metrics reads counters and gauges of the package's collectors.
func counter(service, result string) float64 {
	return promtestutil.ToFloat64(connectionsTotal.WithLabelValues(service, result))
}
func errorCount(reason string) float64 {
	return promtestutil.ToFloat64(errorsTotal.WithLabelValues(reason))
}
func activeCount(service string) float64 {
	return promtestutil.ToFloat64(activeConnections.WithLabelValues(service))
}
func byteCount(service, dir string) float64 {
	return promtestutil.ToFloat64(bytesTotal.WithLabelValues(service, dir))
}

// listenerClosed is a condition for testutil.Eventually: nothing accepts on addr.
func listenerClosed(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	}
}

// uniqueSNI returns a server name no other test uses, so metric deltas are the test's.
var sniSeq atomic.Int64

func uniqueSNI(name string) (sni, service string) {
	host := fmt.Sprintf("%s-%d.shop.svc.clusterset.local", strings.ReplaceAll(strings.ToLower(name), "/", "-"), sniSeq.Add(1))
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, host)
	return xdsnames.SNI(host, 8080), host + ":8080"
}

var _ = bytes.Equal
