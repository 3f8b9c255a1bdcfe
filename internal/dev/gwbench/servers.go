package gwbench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

// pki is a self-signed server certificate for the echo backend's names, and the pool
// that trusts it.
type pki struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newPKI(names ...string) (*pki, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gwbench"},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &pki{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}, nil
}

// clientConfig dials sni and verifies the echo backend's certificate. No session
// cache: every connection makes a full handshake.
func (p *pki) clientConfig(sni string) *tls.Config {
	return &tls.Config{ServerName: sni, RootCAs: p.pool, MinVersion: tls.VersionTLS13}
}

// server accepts on 127.0.0.1 and serves each connection with handle until close.
type server struct {
	ln net.Listener
	wg sync.WaitGroup
	mu sync.Mutex
	cs map[net.Conn]bool
}

func serve(handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, cs: map[net.Conn]bool{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.cs[c] = true
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.cs, c)
					s.mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	return s, nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.cs {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// sinkServer reads each connection to its end (the client's half-close) and answers
// with the byte count it read, 8 bytes big-endian: the client's proof that every
// byte arrived.
func sinkServer() (*server, error) {
	return serve(func(c net.Conn) {
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		if err != nil {
			return
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		c.Write(b[:]) //nolint:errcheck // the client reports a short answer
	})
}

// echoServer terminates TLS with p's certificate and echoes what it reads.
func echoServer(p *pki) (*server, error) {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS13}
	return serve(func(raw net.Conn) {
		c := tls.Server(raw, cfg)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// clientHello returns the first TLS record a crypto/tls client sends with cfg: its
// ClientHello, which a throughput connection sends before its plain bytes so that the
// gateway can route it.
func clientHello(cfg *tls.Config) ([]byte, error) {
	client, srv := net.Pipe()
	defer client.Close()
	defer srv.Close()
	go tls.Client(client, cfg).Handshake()                //nolint:errcheck // ends when the pipe closes
	srv.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		return nil, err
	}
	if hdr[0] != 22 {
		return nil, errors.New("gwbench: the TLS client's first record is not a handshake")
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(srv, body); err != nil {
		return nil, err
	}
	return append(hdr, body...), nil
}
