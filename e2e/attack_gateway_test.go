package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfed/meshfed/eastwest"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

func init() {
	addAttack("gateway: 20,000 connections from one source", attackGatewayFlood)
}

// attackGatewayFlood: one source (127.0.0.2, an address of its own on loopback, so
// that the federation's own traffic, from 127.0.0.1, is another source) makes 20,000
// connection attempts against the gateway of the cluster on a network of its own,
// 600 at a time: each holds its connection up to 2s, a quarter of them after sending
// a ClientHello for cart (a tunnel to a backend), the others after sending nothing.
// The gateway takes at most MaxConnectionsPerSource of them at once and closes the
// rest at accept (source_limit); its /metrics answers throughout, neither its global
// limit nor its descriptor budget is reached, and once the clients have closed, its
// open descriptors are back where they were.
func attackGatewayFlood(t *testing.T, w *attackWorld) {
	const (
		attempts  = 20000
		workers   = 600
		hold      = 2 * time.Second
		perSource = eastwest.DefaultMaxConnectionsPerSource
		source    = "127.0.0.2"
	)
	gw := w.s.Clusters[len(w.s.Clusters)-1]
	if gw.GatewayHealthAddr == "" || gw.GatewayPID == 0 {
		t.Fatalf("cluster %s has no gateway to attack", gw.Name)
	}
	metricsURL := "http://" + gw.GatewayHealthAddr + "/metrics"
	hello := clientHello(t, xdsnames.SNI("cart.shop.svc.clusterset.local", 8080))
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Minute)
	defer cancel()

	baseline := gatewayFDs(t, gw)
	before, err := scrapeGateway(ctx, metricsURL)
	if err != nil {
		t.Fatalf("the gateway's /metrics before the attack: %v", err)
	}

	// The prober: /metrics every 50ms, timed, and the gateway's descriptors.
	probe := &gatewayProbe{}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		probe.run(probeCtx, metricsURL, gw)
	}()

	var (
		next, dialErrors, heldFull, closedEarly atomic.Int64
		wg                                      sync.WaitGroup
	)
	dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > attempts || ctx.Err() != nil {
					return
				}
				c, err := dialer.DialContext(ctx, "tcp", gw.GatewayAddr)
				if err != nil {
					dialErrors.Add(1)
					continue
				}
				if i%4 == 0 {
					c.Write(hello) //nolint:errcheck // a refused connection may be gone already
				}
				c.SetReadDeadline(time.Now().Add(hold)) //nolint:errcheck
				_, err = io.Copy(io.Discard, c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					heldFull.Add(1)
				} else {
					closedEarly.Add(1)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	flood := time.Since(start)

	// Back to the baseline once the clients have closed (idle pipes are closed after
	// a few seconds; peeking connections the attacker closed end at once).
	var after int
	testutil.Eventually(t, 60*time.Second, "the gateway's descriptors back to the baseline", func() error {
		after = gatewayFDs(t, gw)
		if after > baseline {
			return fmt.Errorf("%d open, %d before the attack", after, baseline)
		}
		return nil
	})
	stopProbe()
	<-probed
	end, err := scrapeGateway(ctx, metricsURL)
	if err != nil {
		t.Fatalf("the gateway's /metrics after the attack: %v", err)
	}

	delta := func(sample string) int { return int(end[sample] - before[sample]) }
	refused := delta(`meshfed_gateway_connections_total{result="source_limit",service=""}`)
	accepted := attempts - int(dialErrors.Load()) - refused
	probe.mu.Lock()
	defer probe.mu.Unlock()
	p99 := percentile(probe.latencies, 0.99)
	t.Logf("connection flood from %s against %s's gateway (%s), %d at a time, in %v:", source, gw.Name, gw.GatewayAddr, workers, flood.Round(time.Millisecond))
	t.Logf("| attempts | accepted | refused (source_limit) | dial errors | held %v | closed earlier | peak open | peak fds | fds before | fds after | /metrics probes | failed | p99 |",
		hold)
	t.Logf("| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %v |",
		attempts, accepted, refused, dialErrors.Load(), heldFull.Load(), closedEarly.Load(),
		int(probe.peakOpen), probe.peakFDs, baseline, after, len(probe.latencies), len(probe.failures), p99.Round(time.Microsecond))

	if refused == 0 {
		t.Errorf("no connection was refused as source_limit: %d attempts, %d at a time, from one source", attempts, workers)
	}
	if n := dialErrors.Load(); n > 0 {
		t.Errorf("%d connection attempts failed to connect at all; the gateway must accept and close", n)
	}
	if limit := before[`meshfed_gateway_open_connections`] + perSource; probe.peakOpen > limit {
		t.Errorf("the gateway had %v connections open, over %v (its %v before, plus the per-source limit)", probe.peakOpen, limit, before[`meshfed_gateway_open_connections`])
	}
	for _, reason := range []string{"over_limit", "fd_budget"} {
		if n := delta(`meshfed_gateway_connections_total{result="` + reason + `",service=""}`); n != 0 {
			t.Errorf("%d connections refused as %s: the per-source limit should have kept the gateway from it", n, reason)
		}
	}
	if len(probe.failures) > 0 {
		t.Errorf("/metrics failed %d times during the flood, first: %v", len(probe.failures), probe.failures[0])
	}
	if len(probe.latencies) == 0 {
		t.Error("/metrics was never probed during the flood")
	}
}

// gatewayFDs counts the gateway process's open file descriptors.
func gatewayFDs(t *testing.T, c *sandbox.Cluster) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.GatewayPID))
	if err != nil {
		t.Fatalf("the gateway's descriptors: %v", err)
	}
	return len(ents)
}

// gatewayProbe records /metrics answers and the gateway's peaks during an attack.
type gatewayProbe struct {
	mu        sync.Mutex
	latencies []time.Duration
	failures  []error
	peakOpen  float64
	peakFDs   int
}

func (p *gatewayProbe) run(ctx context.Context, url string, c *sandbox.Cluster) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		start := time.Now()
		samples, err := scrapeGateway(ctx, url)
		took := time.Since(start)
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.GatewayPID))
		p.mu.Lock()
		if ctx.Err() == nil {
			if err != nil {
				p.failures = append(p.failures, err)
			} else {
				p.latencies = append(p.latencies, took)
				p.peakOpen = max(p.peakOpen, samples[`meshfed_gateway_open_connections`])
			}
		}
		p.peakFDs = max(p.peakFDs, len(ents))
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scrapeGateway reads a gateway's /metrics, each sample by its exact name and labels,
// within 5 seconds, on a connection of its own (no keep-alive: the probe's own
// connection must not count in the gateway's descriptors afterwards).
func scrapeGateway(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "meshfed_gateway_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// clientHello is the first TLS record a client sends for sni.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake() //nolint:errcheck,gosec // only its ClientHello is used
	server.SetReadDeadline(time.Now().Add(10 * time.Second))                                  //nolint:errcheck
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// percentile of d (sorted in place); 0 for none.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}
