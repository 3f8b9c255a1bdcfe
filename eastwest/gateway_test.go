package eastwest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/xdsnames"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestTunnelKeepsTLSEndToEnd is the gateway's reason to exist: a client's mTLS
// handshake goes through it to the backend, which sees the client's own certificate
// and SNI, so the gateway terminated nothing.
func TestTunnelKeepsTLSEndToEnd(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{}, Routes{sni: {b.addr()}})

	c, name := dialTLS(t, addr, sni)
	if name != "b1" {
		t.Fatalf("reached %q", name)
	}
	echo(t, c, "hello through the gateway")
	seen := <-b.seen
	pki := getPKI(t)
	if seen.ClientID != pki.clientID {
		t.Errorf("backend saw client identity %q, want %q: TLS was not end to end", seen.ClientID, pki.clientID)
	}
	if seen.SNI != sni {
		t.Errorf("backend saw SNI %q, want %q", seen.SNI, sni)
	}
	if got := c.ConnectionState().PeerCertificates[0].URIs[0].String(); got != pki.serverID {
		t.Errorf("client saw server identity %q", got)
	}
	if got := counter(svc, resultOK); got != 1 {
		t.Errorf("connections_total{result=ok} = %v, want 1", got)
	}
	if got := activeCount(svc); got != 1 {
		t.Errorf("active_connections = %v, want 1", got)
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, "the tunnel to end", testutil.Check(func() (bool, string) { return activeCount(svc) == 0, "" }))
	if to, from := byteCount(svc, directionToBackend), byteCount(svc, directionToClient); to < 500 || from < 500 {
		t.Errorf("bytes_total to_backend %v, to_client %v: want both past a TLS handshake", to, from)
	}
}

// TestHalfClose: the client shuts down its sending side; the backend reads EOF at the
// TCP level, not only TLS's close_notify, and still answers over the same tunnel.
func TestHalfClose(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	backendSawFIN := make(chan error, 1)
	b.handle = func(c *tls.Conn) {
		req, err := io.ReadAll(c) // until close_notify
		if err != nil {
			backendSawFIN <- err
			return
		}
		// Then the TCP FIN that the gateway passed on: the raw socket reads EOF.
		raw := c.NetConn()
		raw.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		n, err := raw.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) {
			backendSawFIN <- errors.New("backend's socket did not read EOF after the client's half-close: " + errString(err))
			return
		}
		backendSawFIN <- nil
		c.Write([]byte("answer to " + string(req))) //nolint:errcheck
		c.Close()
	}
	_, addr := startGateway(t, Options{}, Routes{sni: {b.addr()}})

	c, _ := dialTLS(t, addr, sni)
	defer c.Close()
	if _, err := c.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil { // close_notify
		t.Fatal(err)
	}
	if err := c.NetConn().(*net.TCPConn).CloseWrite(); err != nil { // FIN
		t.Fatal(err)
	}
	if err := <-backendSawFIN; err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "answer to question" {
		t.Fatalf("got %q", got)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestRefusals covers connections that must be closed before any tunnel: each is
// closed cleanly and counted, and a tunnel open meanwhile is not disturbed.
func TestRefusals(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	emptySNI, emptySvc := uniqueSNI(t.Name() + "-empty")
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{MaxClientHelloBytes: 2500}, Routes{sni: {b.addr()}, emptySNI: nil})

	good, _ := dialTLS(t, addr, sni)
	defer good.Close()

	pki := getPKI(t)
	unknown := rawHello(t, pki.clientConfig("outbound_.8080_._.nope.shop.svc.clusterset.local"))
	noSNI := rawHello(t, &tls.Config{InsecureSkipVerify: true})
	toEmpty := rawHello(t, pki.clientConfig(emptySNI))
	big := rawHello(t, &tls.Config{ServerName: sni, InsecureSkipVerify: true,
		NextProtos: slices.Repeat([]string{strings.Repeat("a", 250)}, 8)})
	malformed := bytes.Clone(unknown)
	malformed[5] = 2 // a ServerHello

	tests := map[string]struct {
		send    []byte
		service string
		reason  string
	}{
		"unknown sni":        {send: unknown, reason: reasonUnknownSNI},
		"no sni":             {send: noSNI, reason: reasonNoSNI},
		"no ready endpoint":  {send: toEmpty, service: emptySvc, reason: reasonNoEndpoint},
		"http":               {send: []byte("GET / HTTP/1.1\r\nHost: cart\r\n\r\n"), reason: reasonNotTLS},
		"malformed":          {send: malformed, reason: reasonMalformed},
		"too large":          {send: big, reason: reasonTooLarge},
		"truncated":          {send: unknown[:100], reason: reasonTruncated},
		"nothing sent":       {send: nil, reason: reasonNoData},
		"garbage handshake":  {send: append([]byte{22, 3, 1, 0, 10}, bytes.Repeat([]byte{0xee}, 10)...), reason: reasonMalformed},
		"zero-length record": {send: []byte{22, 3, 1, 0, 0}, reason: reasonMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before, beforeErr := counter(tc.service, tc.reason), errorCount(tc.reason)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if name == "truncated" || name == "nothing sent" {
				c.(*net.TCPConn).CloseWrite() //nolint:errcheck
			}
			expectClosed(t, c, 5*time.Second)
			testutil.Eventually(t, 5*time.Second, "the failure to be counted", func() error {
				if got, gotErr := counter(tc.service, tc.reason)-before, errorCount(tc.reason)-beforeErr; got != 1 || gotErr != 1 {
					return fmt.Errorf("connections_total{%s} +%v, errors_total +%v; want +1 each", tc.reason, got, gotErr)
				}
				return nil
			})
		})
	}
	echo(t, good, "still here")
	if got := counter(svc, resultOK); got != 1 {
		t.Errorf("connections_total{%s, ok} = %v", svc, got)
	}
}

func TestSlowClientHelloTimesOut(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{PeekTimeout: 300 * time.Millisecond}, Routes{sni: {b.addr()}})
	hello := rawHello(t, getPKI(t).clientConfig(sni))

	before := errorCount(reasonPeekTimeout)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write(hello[:20]) //nolint:errcheck // and never the rest
	// Closed, and not before the 300ms PeekTimeout (less a margin for the gateway
	// accepting before start was taken). How long after is the machine's business.
	expectClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms PeekTimeout", took)
	}
	testutil.Eventually(t, 5*time.Second, "peek_timeout counted", testutil.Check(func() (bool, string) { return errorCount(reasonPeekTimeout) == before+1, "" }))
}

// fragmentingConn splits the first write (the ClientHello record) into TLS records of
// 50 bytes of payload, and writes those in 7-byte TCP segments with pauses: the
// gateway must reassemble both layers.
type fragmentingConn struct {
	*net.TCPConn
	first sync.Once
}

func (f *fragmentingConn) Write(b []byte) (int, error) {
	var err error
	done := false
	f.first.Do(func() {
		done = true
		n := int(b[3])<<8 | int(b[4])
		payload, rest := b[5:5+n], b[5+n:]
		var recs []byte
		for len(payload) > 0 {
			k := min(50, len(payload))
			recs = append(recs, 22, 3, 1, byte(k>>8), byte(k))
			recs = append(recs, payload[:k]...)
			payload = payload[k:]
		}
		recs = append(recs, rest...)
		f.TCPConn.SetNoDelay(true) //nolint:errcheck
		for len(recs) > 0 && err == nil {
			k := min(7, len(recs))
			_, err = f.TCPConn.Write(recs[:k])
			recs = recs[k:]
			time.Sleep(time.Millisecond)
		}
	})
	if done {
		return len(b), err
	}
	return f.TCPConn.Write(b)
}

func TestFragmentedClientHello(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{}, Routes{sni: {b.addr()}})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(&fragmentingConn{TCPConn: raw.(*net.TCPConn)}, getPKI(t).clientConfig(sni))
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake through fragmented records and segments: %v", err)
	}
	line := make([]byte, 3)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "b1\n" {
		t.Fatalf("backend name: %q, %v", line, err)
	}
	echo(t, c, "fragmented")
	if seen := <-b.seen; seen.SNI != sni {
		t.Errorf("backend saw SNI %q", seen.SNI)
	}
	if got := counter(svc, resultOK); got != 1 {
		t.Errorf("connections_total ok = %v", got)
	}
}

func TestDialFailures(t *testing.T) {
	// A port nobody listens on: connecting is refused at once.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := netip.MustParseAddrPort(dead.Addr().String())
	dead.Close()

	t.Run("all endpoints refuse", func(t *testing.T) {
		sni, svc := uniqueSNI(t.Name())
		_, addr := startGateway(t, Options{}, Routes{sni: {deadAddr}})
		before := errorCount(reasonDialError)
		_, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
		if err == nil {
			t.Fatal("handshake succeeded to a dead endpoint")
		}
		testutil.Eventually(t, 5*time.Second, "dial_failed counted", testutil.Check(func() (bool, string) { return counter(svc, reasonDialFailed) == 1, "" }))
		if got := errorCount(reasonDialError) - before; got != 1 {
			t.Errorf("dial_error attempts = %v, want 1 (one endpoint, tried once)", got)
		}
	})
	t.Run("another endpoint is tried", func(t *testing.T) {
		sni, svc := uniqueSNI(t.Name())
		b := newBackend(t, "alive")
		_, addr := startGateway(t, Options{}, Routes{sni: {deadAddr, b.addr()}})
		before := errorCount(reasonDialError)
		for range 4 {
			c, name := dialTLS(t, addr, sni)
			if name != "alive" {
				t.Fatalf("reached %q", name)
			}
			c.Close()
		}
		if got := counter(svc, resultOK); got != 4 {
			t.Errorf("ok = %v, want 4", got)
		}
		if got := errorCount(reasonDialError) - before; got < 1 {
			t.Errorf("dial_error = %v, want the dead endpoint's attempts counted", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		sni, svc := uniqueSNI(t.Name())
		hang := blackhole(t)
		_, addr := startGateway(t, Options{DialTimeout: 300 * time.Millisecond}, Routes{sni: {hang}})
		before := errorCount(reasonDialTimeout)
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(rawHello(t, getPKI(t).clientConfig(sni))) //nolint:errcheck
		expectClosed(t, c, 10*time.Second)
		if took := time.Since(start); took < 250*time.Millisecond {
			t.Errorf("gave up after %v, before the 300ms DialTimeout", took)
		}
		testutil.Eventually(t, 5*time.Second, "dial_failed counted", testutil.Check(func() (bool, string) { return counter(svc, reasonDialFailed) == 1, "" }))
		if got := errorCount(reasonDialTimeout) - before; got != 1 {
			t.Errorf("dial_timeout = %v, want 1", got)
		}
	})
}

// blackhole returns a loopback address whose connection attempts hang: a listener
// whose accept queue is full, so the kernel drops further SYNs.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	ln := listenBacklog0(t)
	addr := netip.MustParseAddrPort(ln.Addr().String())
	// Fill the queue (backlog 0 holds one connection); later attempts hang.
	var fill []net.Conn
	for range 4 {
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err != nil {
			break
		}
		fill = append(fill, c)
	}
	t.Cleanup(func() {
		for _, c := range fill {
			c.Close()
		}
		ln.Close()
	})
	c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
	if err == nil {
		c.Close()
		t.Skip("could not make a loopback address whose connections hang")
	}
	return addr
}

// listenBacklog0 listens on 127.0.0.1 with an accept queue of (nearly) zero.
func listenBacklog0(t *testing.T) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "backlog0")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestMaxConnections(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{MaxConnections: 3}, Routes{sni: {b.addr()}})

	var open []*tls.Conn
	for range 3 {
		c, _ := dialTLS(t, addr, sni)
		open = append(open, c)
	}
	before := counter("", reasonOverLimit)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
	c.Close()
	if got := counter("", reasonOverLimit) - before; got != 1 {
		t.Errorf("over_limit = %v, want 1", got)
	}
	for _, c := range open {
		echo(t, c, "unaffected")
	}
	open[0].Close()
	// The slot frees once the gateway has seen the close.
	testutil.Eventually(t, 5*time.Second, "a slot to free", func() error {
		c, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	for _, c := range open[1:] {
		c.Close()
	}
}

func TestRoutesUpdateAtRuntime(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	b1, b2 := newBackend(t, "b1"), newBackend(t, "b2")
	gw, addr := startGateway(t, Options{}, Routes{sni: {b1.addr()}})

	old, name := dialTLS(t, addr, sni)
	defer old.Close()
	if name != "b1" {
		t.Fatalf("reached %q before the update", name)
	}
	if err := gw.SetRoutes(Routes{strings.ToUpper(sni): {b2.addr()}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, name := dialTLS(t, addr, sni)
		if name != "b2" {
			t.Fatalf("reached %q after the update", name)
		}
		c.Close()
	}
	echo(t, old, "the old tunnel still works")

	if err := gw.SetRoutes(Routes{}); err != nil {
		t.Fatal(err)
	}
	before := errorCount(reasonUnknownSNI)
	if _, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni)); err == nil {
		t.Fatal("connected after the route was removed")
	}
	testutil.Eventually(t, 5*time.Second, "unknown_sni counted", testutil.Check(func() (bool, string) { return errorCount(reasonUnknownSNI) == before+1, "" }))
	echo(t, old, "and after the route is gone")
	if got := counter(svc, resultOK); got != 4 {
		t.Errorf("ok = %v, want 4", got)
	}
}

func TestSetRoutesValidates(t *testing.T) {
	gw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := netip.MustParseAddrPort("10.0.0.1:8080")
	for name, r := range map[string]Routes{
		"empty name":       {"": {good}},
		"space in name":    {"a b": {good}},
		"zero port":        {"a": {netip.MustParseAddrPort("10.0.0.1:0")}},
		"unspecified":      {"a": {netip.MustParseAddrPort("0.0.0.0:80")}},
		"invalid addrport": {"a": {netip.AddrPort{}}},
		"same name twice":  {"A.b": {good}, "a.B": {good}},
	} {
		if err := gw.SetRoutes(r); err == nil {
			t.Errorf("%s: SetRoutes accepted %v", name, r)
		}
	}
	if err := gw.SetRoutes(Routes{"Cart.Example": {good, good, netip.MustParseAddrPort("[::ffff:10.0.0.1]:8080")}}); err != nil {
		t.Fatal(err)
	}
	if got := gw.Routes(); len(got) != 1 || len(got["cart.example"]) != 1 {
		t.Errorf("Routes() = %v, want one lower-cased name with one deduplicated endpoint", got)
	}
}

func TestBalancing(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b1, b2, b3 := newBackend(t, "b1"), newBackend(t, "b2"), newBackend(t, "b3")
	gw, addr := startGateway(t, Options{}, Routes{sni: {b1.addr(), b2.addr(), b3.addr()}})

	// Six long-lived tunnels spread two per endpoint.
	byName := map[string][]*tls.Conn{}
	for range 6 {
		c, name := dialTLS(t, addr, sni)
		byName[name] = append(byName[name], c)
		defer c.Close()
	}
	for _, name := range []string{"b1", "b2", "b3"} {
		if len(byName[name]) != 2 {
			t.Fatalf("tunnels per endpoint: b1 %d, b2 %d, b3 %d; want 2 each", len(byName["b1"]), len(byName["b2"]), len(byName["b3"]))
		}
	}
	// With b1's tunnels closed, least-connections sends the next two to b1.
	for _, c := range byName["b1"] {
		c.Close()
	}
	b1ep := gw.routes.Load().routes[sni].endpoints[0]
	testutil.Eventually(t, 5*time.Second, "b1's tunnels to end", testutil.Check(func() (bool, string) { return b1ep.active.Load() == 0, "" }))
	// A route update keeps the counts: b2 and b3 still have two each.
	if err := gw.SetRoutes(Routes{sni: {b3.addr(), b2.addr(), b1.addr()}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, name := dialTLS(t, addr, sni)
		defer c.Close()
		if name != "b1" {
			t.Errorf("new tunnel went to %s, want the least loaded b1", name)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	_, addr := startGateway(t, Options{IdleTimeout: 400 * time.Millisecond}, Routes{sni: {b.addr()}})
	before := errorCount(reasonIdleTimeout)

	c, _ := dialTLS(t, addr, sni)
	defer c.Close()
	// Traffic every 100ms keeps it open well past the timeout.
	for range 10 {
		echo(t, c, "ping")
		time.Sleep(100 * time.Millisecond)
	}
	// Then silence: closed, and not before the 400ms IdleTimeout (the last byte
	// moved about 100ms before start). How long after is the machine's business.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on an idle tunnel: %v, want it closed", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("closed %v after the last byte, before the 400ms IdleTimeout", took)
	}
	testutil.Eventually(t, 5*time.Second, "idle_timeout counted", testutil.Check(func() (bool, string) { return errorCount(reasonIdleTimeout) == before+1, "" }))
}

func TestShutdownDrains(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	gw, addr := startGateway(t, Options{}, Routes{sni: {b.addr()}})
	health := httptest.NewServer(gw.Handler(nil))
	defer health.Close()
	if code := httpStatus(t, health.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d before draining", code)
	}

	c, _ := dialTLS(t, addr, sni)
	shutdown := make(chan error, 1)
	go func() { shutdown <- gw.Shutdown(context.Background()) }()

	testutil.Eventually(t, 5*time.Second, "/readyz to fail", testutil.Check(func() (bool, string) { return httpStatus(t, health.URL+"/readyz") == http.StatusServiceUnavailable, "" }))
	if code := httpStatus(t, health.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while draining", code)
	}
	testutil.Eventually(t, 5*time.Second, "the listener to close", listenerClosed(addr))
	echo(t, c, "the established tunnel still works while draining")
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last tunnel closed")
	}
	if got := activeCount(svc); got != 0 {
		t.Errorf("active_connections = %v after drain", got)
	}
}

func TestShutdownDeadlineClosesTunnels(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	gw, addr := startGateway(t, Options{}, Routes{sni: {b.addr()}})
	c, _ := dialTLS(t, addr, sni)
	defer c.Close()
	// A second client still in its ClientHello is closed too.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte{22, 3, 1}) //nolint:errcheck
	testutil.Eventually(t, 5*time.Second, "the gateway to accept the slow client", testutil.Check(func() (bool, string) {
		return gw.open.Load() == 2, fmt.Sprintf("%d connections open", gw.open.Load())
	}))

	// The test decides when the deadline passes, so that what happens before it and
	// after it is asserted without measuring time.
	before := errorCount(reasonShutdown)
	ctx, expire := newTestDeadline()
	shutdown := make(chan error, 1)
	go func() { shutdown <- gw.Shutdown(ctx) }()
	testutil.Eventually(t, 5*time.Second, "the listener to close", listenerClosed(addr))
	echo(t, c, "before the deadline the tunnel still works")
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v before its deadline, with a tunnel open", err)
	default:
	}

	expire()
	select {
	case err := <-shutdown:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after its deadline")
	}
	expectClosed(t, slow, 5*time.Second)
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("tunnel still open after Shutdown's deadline")
	}
	if got := errorCount(reasonShutdown) - before; got != 2 {
		t.Errorf("shutdown errors = %v, want 2 (a tunnel and a peek)", got)
	}
}

// testDeadline is a context whose deadline passes when the test says so.
type testDeadline struct {
	context.Context
	done chan struct{}
}

func newTestDeadline() (context.Context, func()) {
	d := testDeadline{Context: context.Background(), done: make(chan struct{})}
	var once sync.Once
	return d, func() { once.Do(func() { close(d.done) }) }
}

func (d testDeadline) Done() <-chan struct{} { return d.done }

func (d testDeadline) Err() error {
	select {
	case <-d.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestReadiness(t *testing.T) {
	gw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if gw.Ready() == nil {
		t.Error("ready before serving")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	testutil.Eventually(t, 5*time.Second, "serving", testutil.Check(func() (bool, string) { return gw.Ready() != nil && gw.Ready().Error() == "no routes yet", "" }))
	gw.SetRoutes(Routes{}) //nolint:errcheck
	testutil.Eventually(t, 5*time.Second, "ready", testutil.Check(func() (bool, string) { return gw.Ready() == nil, "" }))
	gw.BeginDrain()
	if err := gw.Ready(); err == nil || err.Error() != "draining" {
		t.Errorf("Ready() = %v while draining", err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve = %v", err)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := gw.Serve(ln2); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
}

func httpStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode
}

func TestOptionsDefaults(t *testing.T) {
	var o Options
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	limit, ok := openFileLimit()
	if !ok {
		t.Fatal("no RLIMIT_NOFILE")
	}
	want := Options{
		Address: ":15443", MaxConnections: 10000, MaxConnectionsPerSource: 512, MaxClientHelloBytes: 16*1024 + 5,
		MaxFDs:      limit - min(max(limit/8, 64), 1024),
		PeekTimeout: 10 * time.Second, DialTimeout: 5 * time.Second, DialAttempts: 2, IdleTimeout: time.Hour,
	}
	o.Logger = want.Logger
	if o != want {
		t.Errorf("defaults %+v, want %+v", o, want)
	}
	for name, bad := range map[string]Options{
		"negative max":                   {MaxConnections: -1},
		"negative per source":            {MaxConnectionsPerSource: -1},
		"tiny fd budget":                 {MaxFDs: 3},
		"fd budget at the process limit": {MaxFDs: limit},
		"tiny hello bound":               {MaxClientHelloBytes: 10},
		"negative timeout":               {IdleTimeout: -time.Second},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("%s: New accepted %+v", name, bad)
		}
	}
}

func TestSNI(t *testing.T) {
	sni := xdsnames.SNI("Cart.Shop.svc.clusterset.local", 8080)
	if sni != "outbound_.8080_._.cart.shop.svc.clusterset.local" {
		t.Fatalf("SNI = %q", sni)
	}
	tests := map[string]struct {
		host string
		port uint32
		ok   bool
	}{
		sni: {"cart.shop.svc.clusterset.local", 8080, true},
		"outbound_.9090_.v1_.reviews.default.svc.cluster.local": {"reviews.default.svc.cluster.local", 9090, true},
		"outbound_.0_._.a":            {},
		"outbound_.70000_._.a":        {},
		"outbound_.80_._.":            {},
		"inbound_.80_._.a":            {},
		"outbound|8080||cart":         {},
		"cart.shop.svc.cluster.local": {},
	}
	for in, want := range tests {
		host, port, ok := xdsnames.ParseSNI(in)
		if host != want.host || port != want.port || ok != want.ok {
			t.Errorf("xdsnames.ParseSNI(%q) = %q, %d, %v; want %q, %d, %v", in, host, port, ok, want.host, want.port, want.ok)
		}
	}
	if got := serviceLabel(sni); got != "cart.shop.svc.clusterset.local:8080" {
		t.Errorf("serviceLabel = %q", got)
	}
	if got := serviceLabel("plain.example"); got != "plain.example" {
		t.Errorf("serviceLabel = %q", got)
	}
}

// TestSlowReceiverIsNotIdle: a backend that reads slowly keeps a splice blocked in
// the middle of a transfer for longer than IdleTimeout; the tunnel is still moving
// bytes, so it must not be closed as idle.
func TestSlowReceiverIsNotIdle(t *testing.T) {
	sni, _ := uniqueSNI(t.Name())
	done := make(chan int64, 1)
	slow := rawServer(t, func(c *net.TCPConn) {
		c.SetReadBuffer(64 << 10) //nolint:errcheck
		var n int64
		buf := make([]byte, 32<<10)
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // about 1.6 MB/s
		}
		done <- n
		c.Write([]byte{1}) //nolint:errcheck
	})
	_, addr := startGateway(t, Options{IdleTimeout: 300 * time.Millisecond}, Routes{sni: {slow}})
	hello := rawHello(t, getPKI(t).clientConfig(sni))
	before := errorCount(reasonIdleTimeout)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const total = 4 << 20
	c.SetDeadline(time.Now().Add(time.Minute)) //nolint:errcheck
	if _, err := c.Write(append(hello, make([]byte, total)...)); err != nil {
		t.Fatalf("write: %v (closed as idle?)", err)
	}
	c.(*net.TCPConn).CloseWrite() //nolint:errcheck
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("backend's answer: %v", err)
	}
	if n := <-done; n != int64(len(hello)+total) {
		t.Errorf("backend read %d bytes, want %d", n, len(hello)+total)
	}
	if got := errorCount(reasonIdleTimeout) - before; got != 0 {
		t.Errorf("idle_timeout counted %v times for a busy tunnel", got)
	}
}
