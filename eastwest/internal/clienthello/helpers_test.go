package clienthello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// captureConn is a net.Conn that records what a TLS client writes and fails its
// reads, so a client Handshake writes its ClientHello and stops.
type captureConn struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var errCaptured = errors.New("captured")

func (c *captureConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(b)
}
func (c *captureConn) Read([]byte) (int, error)         { return 0, errCaptured }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// realHello returns the bytes crypto/tls writes as the first flight of a client with
// cfg: the ClientHello records.
func realHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := &captureConn{}
	err := tls.Client(c, cfg).Handshake()
	if !errors.Is(err, errCaptured) {
		t.Fatalf("handshake: got %v, want the capture error", err)
	}
	return bytes.Clone(c.buf.Bytes())
}

// serverSees returns the server name a crypto/tls server reads from the records in
// raw, the reference the parser is compared with.
func serverSees(t testing.TB, raw []byte) (string, bool) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	got := make(chan string, 1)
	go func() {
		// The server stops reading at its callback and answers with an alert: drain it.
		client.Write(raw)           //nolint:errcheck
		io.Copy(io.Discard, client) //nolint:errcheck
	}()
	srv := tls.Server(server, &tls.Config{
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- hi.ServerName
			return nil, errCaptured
		},
	})
	srv.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	srv.Handshake()                                  //nolint:errcheck
	select {
	case name := <-got:
		return name, true
	default:
		return "", false
	}
}

// refragment rewrites the ClientHello records in raw as records of at most size
// bytes of payload each.
func refragment(t testing.TB, raw []byte, size int) []byte {
	t.Helper()
	var payload []byte
	for len(raw) > 0 {
		if len(raw) < RecordHeaderLen {
			t.Fatal("truncated record header")
		}
		n := int(raw[3])<<8 | int(raw[4])
		payload = append(payload, raw[RecordHeaderLen:RecordHeaderLen+n]...)
		raw = raw[RecordHeaderLen+n:]
	}
	var out []byte
	for len(payload) > 0 {
		k := min(size, len(payload))
		out = append(out, recordTypeHandshake, 3, 1, byte(k>>8), byte(k))
		out = append(out, payload[:k]...)
		payload = payload[k:]
	}
	return out
}

// helloConfigs are client configurations whose ClientHellos the tests use.
func helloConfigs() map[string]*tls.Config {
	sni := "outbound_.8080_._.cart.shop.svc.clusterset.local"
	return map[string]*tls.Config{
		"tls13 default": {ServerName: sni, InsecureSkipVerify: true},
		"tls12 only":    {ServerName: sni, InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12},
		"alpn h2": {
			ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"h2", "istio-peer-exchange", "istio"},
		},
		"classic curves": {
			ServerName: sni, InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.CurveP256, tls.X25519},
		},
		"post-quantum key share": {
			ServerName: "Mixed.Case.Example", InsecureSkipVerify: true,
			CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		},
		"no sni (no name)":   {InsecureSkipVerify: true},
		"no sni (ip target)": {ServerName: "10.0.0.1", InsecureSkipVerify: true},
	}
}
