package eastwest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// The harness: raw TCP backends and clients that start with a real ClientHello (so
// the gateway can route them) and then move plain bytes, so that what is measured is
// the gateway's cost, not TLS's. Direct and gateway runs talk to the same backend.

// rawServer serves each connection with handle on 127.0.0.1.
func rawServer(t testing.TB, handle func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// sinkResult is what a sink read from one connection.
type sinkResult struct {
	n   int64
	sum [sha256.Size]byte
}

// sink reads each connection to EOF, reports the byte count and digest, and answers
// with one byte before closing: the client's proof that everything arrived.
func sink(t testing.TB, results chan<- sinkResult) netip.AddrPort {
	return rawServer(t, func(c *net.TCPConn) {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if results != nil {
				h.Write(buf[:k])
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
		}
		if results != nil {
			r := sinkResult{n: n}
			copy(r.sum[:], h.Sum(nil))
			results <- r
		}
		c.Write([]byte{1}) //nolint:errcheck
	})
}

// echoServer echoes every connection byte for byte.
func echoServer(t testing.TB) netip.AddrPort {
	return rawServer(t, func(c *net.TCPConn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// throughput sends hello then total bytes to addr in chunk-sized writes, half-closes,
// waits for the sink's answer, and returns MB/s (10^6 bytes per second).
func throughput(addr string, hello []byte, total int64, chunk int) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	if _, err := c.Write(hello); err != nil {
		return 0, err
	}
	for sent := int64(0); sent < total; {
		k := min(int64(chunk), total-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			return 0, err
		}
		sent += k
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return 0, fmt.Errorf("sink's answer: %w", err)
	}
	return float64(total) / time.Since(start).Seconds() / 1e6, nil
}

// latency sends hello to an echo server at addr (and reads it back), then does n
// round trips of size bytes and returns every round trip's duration.
func latency(addr string, hello []byte, n, size int) ([]time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
		return nil, err
	}
	msg, got := make([]byte, size), make([]byte, size)
	rtts := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// perfSetup is a sink and an echo server, and a gateway routing to both.
type perfSetup struct {
	sinkHello, echoHello []byte // ClientHellos with each route's SNI
	sinkAddr, echoAddr   string // the servers, directly
	gateway              string
}

func newPerfSetup(t testing.TB) *perfSetup {
	t.Helper()
	sinkSNI, _ := uniqueSNI("perf-sink")
	echoSNI, _ := uniqueSNI("perf-echo")
	s, e := sink(t, nil), echoServer(t)
	_, gw := startGateway(t, Options{}, Routes{sinkSNI: {s}, echoSNI: {e}})
	return &perfSetup{
		sinkHello: rawHello(t, getPKI(t).clientConfig(sinkSNI)),
		echoHello: rawHello(t, getPKI(t).clientConfig(echoSNI)),
		sinkAddr:  s.String(),
		echoAddr:  e.String(),
		gateway:   gw,
	}
}

func benchThroughput(b *testing.B, viaGateway bool) {
	p := newPerfSetup(b)
	addr := p.sinkAddr
	if viaGateway {
		addr = p.gateway
	}
	const chunk = 256 << 10
	b.SetBytes(chunk)
	b.ResetTimer()
	if _, err := throughput(addr, p.sinkHello, int64(b.N)*chunk, chunk); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkThroughputDirect and BenchmarkThroughputGateway stream bytes over one TCP
// connection to the same sink, directly and through the gateway; compare their MB/s.
func BenchmarkThroughputDirect(b *testing.B)  { benchThroughput(b, false) }
func BenchmarkThroughputGateway(b *testing.B) { benchThroughput(b, true) }

func benchLatency(b *testing.B, viaGateway bool) {
	p := newPerfSetup(b)
	addr := p.echoAddr
	if viaGateway {
		addr = p.gateway
	}
	b.ResetTimer()
	rtts, err := latency(addr, p.echoHello, b.N, 64)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(percentile(rtts, 0.50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(rtts, 0.99).Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkLatencyDirect and BenchmarkLatencyGateway time 64-byte round trips to the
// same echo server, directly and through the gateway.
func BenchmarkLatencyDirect(b *testing.B)  { benchLatency(b, false) }
func BenchmarkLatencyGateway(b *testing.B) { benchLatency(b, true) }

var errNoProc = errors.New("no /proc/self/io")

func readChars() (int64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, errNoProc
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errNoProc
}

// TestPerformance compares the gateway with direct connections to the same servers,
// alternating the two in rounds so that other load on the machine hits both alike,
// and logs median throughput and round-trip percentiles. It is a measurement, not a
// check: run it with MESHFED_GATEWAY_PERF=1 go test -run TestPerformance -v ./eastwest
func TestPerformance(t *testing.T) {
	if os.Getenv("MESHFED_GATEWAY_PERF") != "1" {
		t.Skip("set MESHFED_GATEWAY_PERF=1 to measure")
	}
	comparePerformance(t, newPerfSetup(t))
}

// comparePerformance alternates direct and gateway runs and logs medians.
func comparePerformance(t *testing.T, p *perfSetup) {
	const (
		rounds = 7
		total  = 512 << 20
		chunk  = 256 << 10
		trips  = 5000
	)
	var direct, gw, directCPU, gwCPU []float64
	var directRTT, gwRTT []time.Duration
	for range rounds {
		for _, via := range []bool{false, true} {
			sinkAddr, echoAddr := p.sinkAddr, p.echoAddr
			if via {
				sinkAddr, echoAddr = p.gateway, p.gateway
			}
			cpu0 := cpuTime()
			mbps, err := throughput(sinkAddr, p.sinkHello, total, chunk)
			if err != nil {
				t.Fatal(err)
			}
			// CPU seconds (user + system, the whole process) per GB moved.
			perGB := (cpuTime() - cpu0).Seconds() / (float64(total) / 1e9)
			rtts, err := latency(echoAddr, p.echoHello, trips, 64)
			if err != nil {
				t.Fatal(err)
			}
			if via {
				gw, gwRTT, gwCPU = append(gw, mbps), append(gwRTT, rtts...), append(gwCPU, perGB)
			} else {
				direct, directRTT, directCPU = append(direct, mbps), append(directRTT, rtts...), append(directCPU, perGB)
			}
		}
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	t.Logf("throughput MB/s, %d rounds of %d MiB: direct median %.0f %v; gateway median %.0f %v; ratio %.0f%%",
		rounds, total>>20, median(direct), roundAll(direct), median(gw), roundAll(gw), 100*median(gw)/median(direct))
	t.Logf("CPU seconds per GB (client, sink and gateway together): direct %.2f, gateway %.2f; the gateway's share %.2f",
		median(directCPU), median(gwCPU), median(gwCPU)-median(directCPU))
	t.Logf("64-byte round trips (%d): direct p50 %v p99 %v; gateway p50 %v p99 %v; added p50 %v p99 %v",
		len(directRTT), percentile(directRTT, .5), percentile(directRTT, .99), percentile(gwRTT, .5), percentile(gwRTT, .99),
		percentile(gwRTT, .5)-percentile(directRTT, .5), percentile(gwRTT, .99)-percentile(directRTT, .99))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func roundAll(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// TestTunnelSplicesAndKeepsBytes streams 64 MiB through a tunnel whose copy gives
// its pipe back and takes one again many times, and checks that the
// sink got every byte in order, that bytes_total counted them, and (on Linux, from
// /proc/self/io) that the gateway moved them with splice: this process's read
// syscalls account for the sink's reads only, not for a second, user-space copy in
// the gateway.
func TestTunnelSplicesAndKeepsBytes(t *testing.T) {
	sni, svc := uniqueSNI(t.Name())
	results := make(chan sinkResult, 1)
	s := sink(t, results)
	// IdleTimeout 200ms: activity is sampled every 50ms; pipes are given back after
	// 10ms without bytes.
	old := pipeHold
	pipeHold = 10 * time.Millisecond
	t.Cleanup(func() { pipeHold = old })
	_, gw := startGateway(t, Options{IdleTimeout: 200 * time.Millisecond}, Routes{sni: {s}})
	hello := rawHello(t, getPKI(t).clientConfig(sni))

	const total = 64 << 20
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	want := sha256.Sum256(append(slices.Clone(hello), data...))

	before, procErr := readChars()
	c, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	// Paced, so that the transfer spans many samples and pipe hand-backs.
	for off := 0; off < total; off += 4 << 20 {
		if _, err := c.Write(data[off : off+4<<20]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.(*net.TCPConn).CloseWrite() //nolint:errcheck
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("sink's answer: %v", err)
	}
	after, _ := readChars()
	got := <-results
	if got.n != int64(len(hello)+total) || got.sum != want {
		t.Fatalf("sink got %d bytes (digest match %v), want %d", got.n, got.sum == want, len(hello)+total)
	}
	testutil.Eventually(t, 5*time.Second, "bytes_total to count every byte", func() error {
		if got := byteCount(svc, directionToBackend); got != float64(len(hello)+total) {
			return fmt.Errorf("bytes_total{to_backend} = %v, want %d", got, len(hello)+total)
		}
		return nil
	})
	if procErr != nil {
		t.Logf("splice not checked: %v", procErr)
		return
	}
	// The sink's reads count once; a user-space copy in the gateway would count again.
	if read := after - before; read > total*3/2 {
		t.Errorf("this process read %d bytes with read(2) for %d bytes moved: the gateway copied in user space", read, total)
	} else {
		t.Logf("read(2) accounted for %d bytes of %d moved: the gateway spliced", read, total)
	}
}
