package eastwest

import (
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// dialFrom connects to addr from the loopback address local (any 127/8 address is
// this host's on Linux), so that tests can be several sources.
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.Dial("tcp", addr)
}

// stillOpen reports whether the gateway keeps c open for a moment (a connection it
// took), rather than closing it at once (a refusal).
func stillOpen(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d)) //nolint:errcheck
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPerSourceLimit: a source with MaxConnectionsPerSource connections open gets its
// next one closed at once and counted as source_limit; another source is not
// affected; once one of the first source's connections closes, it may open another.
func TestPerSourceLimit(t *testing.T) {
	const max = 5
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	gw, addr := startGateway(t, Options{MaxConnectionsPerSource: max, PeekTimeout: time.Minute}, Routes{sni: {b.addr()}})
	before := counter("", reasonSourceLimit)

	var held []net.Conn
	for range max {
		c, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	testutil.Eventually(t, 10*time.Second, "every connection counted", testutil.Check(func() (bool, string) {
		return gw.open.Load() == max, fmt.Sprint(gw.open.Load(), " open")
	}))
	over, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	expectClosed(t, over, 5*time.Second)
	if got := counter("", reasonSourceLimit) - before; got != 1 {
		t.Errorf("connections_total{source_limit} +%v, want +1", got)
	}

	// Another source: a whole tunnel, as usual.
	raw, err := dialFrom("127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, name, err := handshake(t, raw, sni)
	if err != nil || name != "b1" {
		t.Fatalf("a tunnel from another source: %v (reached %q)", err, name)
	}
	echo(t, c, "another source")
	c.Close()

	// A slot freed: the first source may connect again.
	held[0].Close()
	testutil.Eventually(t, 10*time.Second, "a new connection of the first source taken", func() error {
		c, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if !stillOpen(c, 200*time.Millisecond) {
			return errors.New("refused")
		}
		return nil
	})
}

// handshake does the mesh client's TLS handshake over raw and reads the backend's name.
func handshake(t testing.TB, raw net.Conn, sni string) (net.Conn, string, error) {
	return tryHandshake(raw, getPKI(t).clientConfig(sni))
}

// TestFDBudget: with MaxFDs for eight connections (idle pipes in the pool are closed
// to make room for them), a ninth is closed at once and counted as fd_budget, and
// /metrics and /readyz still answer; tunnels with no room left for a splice pipe
// still carry their bytes (through user space); once connections close, new ones
// are taken.
func TestFDBudget(t *testing.T) {
	const conns = 4
	old := pipeHold
	pipeHold = 10 * time.Millisecond // tunnels give their pipes back quickly
	t.Cleanup(func() { pipeHold = old })
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	gw, addr := startGateway(t, Options{MaxFDs: minFDs, PeekTimeout: time.Minute}, Routes{sni: {b.addr()}})
	// minFDs is 16: eight connections' worth. Four tunnels hold 8; four idle
	// connections the rest.
	var tunnels []net.Conn
	for i := range conns {
		c, _ := dialTLS(t, addr, sni)
		defer c.Close()
		echo(t, c, fmt.Sprintf("tunnel %d", i))
		tunnels = append(tunnels, c)
		// Pipes busy count in the budget; idle ones make room.
		testutil.Eventually(t, 10*time.Second, "the tunnel's pipes back in the pool", testutil.Check(func() (bool, string) {
			busy := promtestutil.ToFloat64(pipesOpen.WithLabelValues("busy"))
			return busy == 0, fmt.Sprint(busy, " pipes busy")
		}))
	}
	var idle []net.Conn
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	testutil.Eventually(t, 10*time.Second, "the budget spent", testutil.Check(func() (bool, string) {
		return gw.fds.used.Load() == minFDs, fmt.Sprint(gw.fds.used.Load(), " in use")
	}))
	before := counter("", reasonFDBudget)
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	expectClosed(t, over, 5*time.Second)
	if got := counter("", reasonFDBudget) - before; got != 1 {
		t.Errorf("connections_total{fd_budget} +%v, want +1", got)
	}
	reg := prometheus.NewRegistry()
	RegisterMetrics(reg)
	health := httptest.NewServer(gw.Handler(reg))
	defer health.Close()
	for _, path := range []string{"/metrics", "/readyz"} {
		if code := httpStatus(t, health.URL+path); code != 200 {
			t.Errorf("%s answered %d with the budget spent", path, code)
		}
	}
	// No room for pipes: the established tunnels copy through user space.
	for i, c := range tunnels {
		echo(t, c, fmt.Sprintf("tunnel %d, no pipe", i))
	}
	for _, c := range idle {
		c.Close()
	}
	testutil.Eventually(t, 10*time.Second, "a new tunnel once connections closed", func() error {
		c, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
		if err != nil {
			return err
		}
		defer c.Close()
		return echoErr(c, "room again")
	})
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents) - 1 // the directory being read
}

// TestFDsReturnToBaseline: 200 tunnels carrying bytes both ways at once hold their
// sockets and, while bytes move, splice pipes; once the clients close, the process's
// descriptors return to what they were before (idle pipes are closed after
// pipeIdleTTL), and the gateway's own accounting to zero.
func TestFDsReturnToBaseline(t *testing.T) {
	const n = 200
	old := pipeIdleTTL
	pipeIdleTTL = 200 * time.Millisecond
	t.Cleanup(func() { pipeIdleTTL = old })
	sni, _ := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	gw, addr := startGateway(t, Options{MaxConnectionsPerSource: n}, Routes{sni: {b.addr()}})
	// Warm up what the process opens once (the runtime's poller, the TLS stack).
	c, _ := dialTLS(t, addr, sni)
	echo(t, c, "warm up")
	c.Close()
	testutil.Eventually(t, 10*time.Second, "the warm-up tunnel closed", testutil.Check(func() (bool, string) {
		return gw.fds.used.Load() == 0, fmt.Sprint(gw.fds.used.Load(), " in use")
	}))
	baseline := openFDs(t)

	conns := make(chan net.Conn, n)
	var g errgroup.Group
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			c, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
			if err != nil {
				return fmt.Errorf("tunnel %d: %w", i, err)
			}
			conns <- c
			return echoErr(c, fmt.Sprintf("tunnel %d: %0512d", i, i))
		})
	}
	err := g.Wait()
	close(conns)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "every tunnel idle", testutil.Check(func() (bool, string) {
		busy := promtestutil.ToFloat64(pipesOpen.WithLabelValues("busy"))
		return busy == 0, fmt.Sprint(busy, " pipes busy")
	}))
	peak := openFDs(t)
	// Each tunnel is four sockets in this process (client, the gateway's two, the
	// backend's); an idle tunnel holds no pipe, and the pool keeps at most
	// maxIdlePipes. (Go's io.Copy splice held two pipes per tunnel: 8n in all.)
	if limit := baseline + 4*n + 2*maxIdlePipes; peak > limit {
		t.Errorf("%d descriptors open with %d idle tunnels, want at most %d: idle tunnels hold pipes", peak, n, limit)
	}
	for c := range conns {
		c.Close()
	}
	testutil.Eventually(t, 30*time.Second, "descriptors back to the baseline", func() error {
		if got := openFDs(t); got > baseline {
			return fmt.Errorf("%d open, baseline %d (peak %d)", got, baseline, peak)
		}
		if used := gw.fds.used.Load(); used != 0 {
			return fmt.Errorf("the gateway accounts %d descriptors", used)
		}
		return nil
	})
	for _, state := range []string{"busy", "idle"} {
		if got := promtestutil.ToFloat64(pipesOpen.WithLabelValues(state)); got != 0 {
			t.Errorf("splice_pipes{%s} = %v, want 0", state, got)
		}
	}
	t.Logf("descriptors: baseline %d, with %d tunnels open %d, after %d", baseline, n, peak, openFDs(t))
}
