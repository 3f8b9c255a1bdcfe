package gwbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// Paths, in the order they are measured and printed.
const (
	Direct  = "direct"
	Splice  = "splice"
	Gateway = "gateway"
)

// Figures are what one path measured over every round.
type Figures struct {
	// MBps is the median over rounds of the throughput, 10^6 bytes per second.
	MBps float64
	// Bytes is what the throughput measurements moved, every one counted by the sink.
	Bytes int64
	// RTT is every round trip's duration, Setup every connection setup's.
	RTT, Setup []time.Duration
	// CPU is the proxy's CPU time during the throughput measurements (0 for direct).
	CPU time.Duration
}

// CPUPerGB is the proxy's CPU seconds per 10^9 bytes moved.
func (f *Figures) CPUPerGB() float64 {
	if f.Bytes == 0 {
		return 0
	}
	return f.CPU.Seconds() / (float64(f.Bytes) / 1e9)
}

// Result is one run.
type Result struct {
	Options Options
	Paths   map[string]*Figures
	// Pinned says where the processes ran; empty PinNote: pinned as designed.
	PinNote string
	// Load is the 1-minute load average before the run.
	Load string
	// CPUs is how many CPUs this process could use.
	CPUs int
}

// Run measures direct TCP, the splice proxy and the gateway, in alternating rounds.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Options: o, Paths: map[string]*Figures{}, Load: loadAverage()}
	res.CPUs = runtime.NumCPU()
	taskset, why := pinning(o.NoPin)
	res.PinNote = why
	if taskset != "" {
		restore, err := pinSelf(taskset, loadCPU)
		if err != nil {
			return nil, err
		}
		defer restore()
	}

	sinkSNI, echoSNI := xdsnames.SNI("sink.gwbench.svc.cluster.local", 9000), xdsnames.SNI("echo.gwbench.svc.cluster.local", 9001)
	pki, err := newPKI(echoSNI)
	if err != nil {
		return nil, err
	}
	sink, err := sinkServer()
	if err != nil {
		return nil, err
	}
	defer sink.close()
	echo, err := echoServer(pki)
	if err != nil {
		return nil, err
	}
	defer echo.close()
	x, err := startXDS(map[string]netip.AddrPort{
		sinkSNI: netip.MustParseAddrPort(sink.addr()), echoSNI: netip.MustParseAddrPort(echo.addr())})
	if err != nil {
		return nil, err
	}
	defer x.stop()

	gwAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "starting the gateway on %s and the splice proxy (%s)\n", gwAddr, pinText(taskset, proxyCPU))
	gw, err := start(o.Dir, "gateway", taskset, proxyCPU, []string{o.MeshfedBinary, "gateway", "--xds-server", x.addr,
		"--listen", gwAddr, "--http-addr", httpAddr, "--node-id", "eastwest~gwbench", "--drain", "1s"}, nil)
	if err != nil {
		return nil, err
	}
	defer gw.Stop(5 * time.Second)
	sc := o.SpliceCommand([]string{"127.0.0.1:0=" + sink.addr(), "127.0.0.1:0=" + echo.addr()})
	sp, err := start(o.Dir, "splice-proxy", taskset, proxyCPU, sc.Args, sc.Env)
	if err != nil {
		return nil, err
	}
	defer sp.Stop(5 * time.Second)
	spAddrs, err := spliceAddrs(sp, 2, 30*time.Second)
	if err != nil {
		return nil, err
	}

	sinkHello, err := clientHello(pki.clientConfig(sinkSNI))
	if err != nil {
		return nil, err
	}
	echoTLS := pki.clientConfig(echoSNI)
	type path struct {
		name       string
		sink, echo string
		p          *proc.Process
	}
	paths := []path{{Direct, sink.addr(), echo.addr(), nil}, {Splice, spAddrs[0], spAddrs[1], sp}, {Gateway, gwAddr, gwAddr, gw}}
	for _, p := range paths[1:] {
		if err := ready(ctx, p.p, p.sink, p.echo, sinkHello, echoTLS); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	rates := map[string][]float64{}
	for _, p := range paths {
		res.Paths[p.name] = &Figures{}
	}
	for round := range o.Rounds {
		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			f := res.Paths[p.name]
			var cpu0 time.Duration
			if p.p != nil {
				if cpu0, err = proc.CPUTime(p.p.Pid()); err != nil {
					return nil, err
				}
			}
			n, elapsed, err := throughput(p.sink, sinkHello, o.Bytes, o.Conns)
			if err != nil {
				return nil, fmt.Errorf("%s: throughput: %w", p.name, err)
			}
			if p.p != nil {
				cpu1, err := proc.CPUTime(p.p.Pid())
				if err != nil {
					return nil, err
				}
				f.CPU += cpu1 - cpu0
			}
			f.Bytes += n
			rate := float64(n) / elapsed.Seconds() / 1e6
			rates[p.name] = append(rates[p.name], rate)
			rtts, err := roundTrips(p.echo, echoTLS, o.RoundTrips, o.RTTConns, o.MessageSize)
			if err != nil {
				return nil, fmt.Errorf("%s: round trips: %w", p.name, err)
			}
			f.RTT = append(f.RTT, rtts...)
			s, err := setups(p.echo, echoTLS, o.Setups, o.MessageSize)
			if err != nil {
				return nil, fmt.Errorf("%s: connection setup: %w", p.name, err)
			}
			f.Setup = append(f.Setup, s...)
			fmt.Fprintf(o.Out, "round %d/%d %-8s %7.0f MB/s  round trip p50 %v  setup p50 %v\n", round+1, o.Rounds, p.name, rate,
				percentile(rtts, .5).Round(time.Microsecond), percentile(s, .5).Round(time.Microsecond))
		}
	}
	for name, r := range rates {
		slices.Sort(r)
		res.Paths[name].MBps = r[len(r)/2]
	}
	for _, p := range paths[1:] {
		if p.p.Exited() {
			return nil, fmt.Errorf("%s exited during the run: %w", p.name, p.p.Failure())
		}
	}
	return res, nil
}

// ready waits until a proxy routes both backends: a sink connection counted whole
// and a TLS round trip to the echo server.
func ready(ctx context.Context, p *proc.Process, sinkAddr, echoAddr string, hello []byte, cfg *tls.Config) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := throughput(sinkAddr, hello, 1, 1)
		if err == nil {
			_, err = roundTrips(echoAddr, cfg, 1, 1, 1)
		}
		switch {
		case err == nil:
			return nil
		case p.Exited():
			return p.Failure()
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("not routing within 30s: %w (log %s)", err, p.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pinText(taskset, cpu string) string {
	if taskset == "" {
		return "not pinned"
	}
	return "pinned to CPU " + cpu
}
