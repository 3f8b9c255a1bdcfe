package gwbench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Print writes the table: every figure for direct TCP, the splice proxy and the
// gateway, and the ratios gateway/splice and gateway/direct; then a note on how the
// run was made.
func (r *Result) Print(w io.Writer) {
	o := r.Options
	d, s, g := r.Paths[Direct], r.Paths[Splice], r.Paths[Gateway]
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tDIRECT\tSPLICE\tGATEWAY\tGATEWAY/SPLICE\tGATEWAY/DIRECT")
	fmt.Fprintf(tw, "throughput, %d connections (MB/s, higher is better)\t%.0f\t%.0f\t%.0f\t%s\t%s\n", o.Conns,
		d.MBps, s.MBps, g.MBps, ratio(g.MBps, s.MBps), ratio(g.MBps, d.MBps))
	lat := func(name string, get func(*Figures) time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, us(get(d)), us(get(s)), us(get(g)),
			ratio(float64(get(g)), float64(get(s))), ratio(float64(get(g)), float64(get(d))))
	}
	added := func(name string, get func(*Figures) time.Duration) {
		fmt.Fprintf(tw, "%s\t—\t%s\t%s\t%s\t—\n", name, us(get(s)-get(d)), us(get(g)-get(d)),
			ratio(float64(get(g)-get(d)), float64(get(s)-get(d))))
	}
	rtt := func(p float64) func(*Figures) time.Duration {
		return func(f *Figures) time.Duration { return percentile(f.RTT, p) }
	}
	setup := func(p float64) func(*Figures) time.Duration {
		return func(f *Figures) time.Duration { return percentile(f.Setup, p) }
	}
	lat(fmt.Sprintf("round trip p50 (%d B over TLS)", o.MessageSize), rtt(.5))
	lat(fmt.Sprintf("round trip p99 (%d B over TLS)", o.MessageSize), rtt(.99))
	added("added to a round trip p50 (vs direct)", rtt(.5))
	added("added to a round trip p99 (vs direct)", rtt(.99))
	lat("connection setup p50 (TLS handshake + 1st round trip)", setup(.5))
	lat("connection setup p99 (TLS handshake + 1st round trip)", setup(.99))
	added("added to a connection setup p50 (vs direct)", setup(.5))
	fmt.Fprintf(tw, "proxy CPU per GB moved (s)\t—\t%.2f\t%.2f\t%s\t—\n", s.CPUPerGB(), g.CPUPerGB(), ratio(g.CPUPerGB(), s.CPUPerGB()))
	tw.Flush()

	pin := fmt.Sprintf("gateway and splice proxy pinned to CPU %s (taskset), backends and load client to CPU %s", proxyCPU, loadCPU)
	if r.PinNote != "" {
		pin = r.PinNote + ": the proxies, backends and load client share every CPU"
	}
	fmt.Fprintf(w, "\n%s; %d CPUs, load average %s before the run.\n", pin, r.CPUs, r.Load)
	fmt.Fprintf(w, "%d rounds, the three paths alternating; per round and path: %d MiB over %d connections (a ClientHello, then plain bytes; "+
		"median of rounds), %d round trips on %d TLS connections, %d new TLS connections. Every byte was counted by the sink, every echo checked.\n",
		o.Rounds, o.Bytes>>20, o.Conns, o.RoundTrips, o.RTTConns, o.Setups)
	fmt.Fprintln(w, "Latencies are client-side and include the backends' and the client's share of CPU 0; on a shared machine, compare ratios, not absolute figures.")
}

func ratio(a, b float64) string {
	if b <= 0 || a < 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
