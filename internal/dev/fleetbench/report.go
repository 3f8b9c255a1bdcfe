package fleetbench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// row is one figure beside its budget. Lower is better for every figure; a row
// without a budget is context.
type row struct {
	figure, measured, budget string
	ratio                    float64 // measured / budget; <0: none
	met                      bool
}

func durRow(figure string, d, budget time.Duration) row {
	r := row{figure: figure, measured: ms(d), ratio: -1, budget: "—"}
	if budget > 0 {
		r.budget, r.ratio, r.met = ms(budget), float64(d)/float64(budget), d <= budget
	}
	return r
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func pctRow(figure string, p, budget float64) row {
	return row{figure: figure, measured: fmt.Sprintf("%.1f%% of a core", p), budget: fmt.Sprintf("%.0f%%", budget),
		ratio: p / budget, met: p <= budget}
}

// Print writes the table: every figure beside its budget and their ratio, and in a
// note the sizes the budgets are stated for where the run's differ.
func (r *Result) Print(w io.Writer) {
	o := r.Options
	rows := []row{
		durRow("light load, one change: etcd write → proxy p50", r.LightP50, BudgetLightP50),
		durRow("light load, one change: etcd write → proxy p99", r.LightP99, BudgetLightP99),
		durRow(fmt.Sprintf("%d back-to-back changes: last seen after last write", o.BurstChanges), r.BurstLast, BudgetBurstLast),
		durRow(fmt.Sprintf("%d back-to-back changes: p99", o.BurstChanges), r.BurstP99, BudgetBurstP99),
		durRow(fmt.Sprintf("churn %d changes/s: p50", o.Rate), r.ChurnP50, 0),
		durRow(fmt.Sprintf("churn %d changes/s: p99", o.Rate), r.ChurnP99, BudgetChurnP99),
		pctRow(fmt.Sprintf("churn %d changes/s: agent CPU", o.Rate), r.ChurnCPU, BudgetAgentCPUPercent),
		pctRow("heartbeats only: agent CPU", r.HeartbeatCPU, BudgetAgentCPUPercent),
		{figure: fmt.Sprintf("heartbeats only: rebuilds in %s", r.HeartbeatWindow), measured: fmt.Sprintf("%.0f (%.1f/s)",
			r.HeartbeatRebuilds, r.HeartbeatRebuilds/r.HeartbeatWindow.Seconds()), budget: "0", ratio: -1, met: r.HeartbeatRebuilds <= BudgetHeartbeatRebuilds},
		{figure: fmt.Sprintf("agent RSS at %d endpoints, steady (after the churn)", r.Endpoints), measured: mib(r.RSS), budget: mib(BudgetAgentRSSBytes),
			ratio: float64(r.RSS) / BudgetAgentRSSBytes, met: r.RSS <= BudgetAgentRSSBytes},
		durRow(fmt.Sprintf("%d streams, one change: p99", r.FanoutStreams), r.FanoutP99, BudgetFanoutP99),
		{figure: fmt.Sprintf("agent live heap %s after the %d streams left", o.HeapSettle, r.FanoutStreams), measured: mib(r.HeapAfter),
			budget: "baseline " + mib(r.HeapBase), ratio: float64(r.HeapAfter) / float64(max(r.HeapBase, 1)), met: r.HeapAfter <= r.HeapBase*11/10},
		durRow(fmt.Sprintf("new agent serves the full view (%d endpoints)", r.Endpoints), r.Bootstrap, BudgetBootstrap),
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tBUDGET\tRATIO\tMET")
	for _, x := range rows {
		ratio, met := "—", "—"
		if x.ratio >= 0 {
			ratio = fmt.Sprintf("%.2f", x.ratio)
		}
		if x.budget != "—" {
			met = map[bool]string{true: "yes", false: "NO"}[x.met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.figure, x.measured, x.budget, ratio, met)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfleet: %d clusters × %d services × %d endpoints = %d endpoints, %d zones; heartbeat TTL %s (%d failed heartbeat writes in the run; %d heartbeat writes, "+
		"%d EDS responses to %d observers, mean rebuild %s in the heartbeat-only window)\n",
		o.Clusters, o.Services, o.Endpoints, r.Endpoints, o.Zones, o.HeartbeatTTL, r.HeartbeatErrors, r.HeartbeatWrites, r.HeartbeatPushes, o.Zones*o.Services,
		ms(r.RebuildMean))
	fmt.Fprintf(w, "light load: the agent's own share (meshfed_xds_change_to_push_seconds, view → snapshots set) %s on average; "+
		"agent RSS just after the bootstrap %s\n", ms(r.LightPushMean), mib(r.BootRSS))
	limit := "none"
	if o.AgentMemoryLimit != "" {
		limit = o.AgentMemoryLimit
	}
	fmt.Fprintf(w, "agent's soft memory limit (GOMEMLIMIT): %s; at the steady RSS the Go runtime counted %s\n", limit, r.RSSParts)
	fmt.Fprintf(w, "burst: %.0f rebuilds for %d changes, the agent's own share %s on average\n", r.BurstRebuilds, o.BurstChanges, ms(r.BurstPushMean))
	fmt.Fprintf(w, "churn: %.1f changes/s achieved, %.0f rebuilds, %d changes unseen at the end, the benchmark's own process "+
		"(simulator, etcd, stream clients) %.0f%% of a core; fan-out: agent CPU %s per change, RSS %s and live heap %s with %d streams; "+
		"%d changes superseded unseen\n",
		r.ChurnRate, r.ChurnRebuilds, r.ChurnUnseen, r.BenchCPU, ms(r.FanoutCPUChange), mib(r.FanoutRSS), mib(r.HeapFanout),
		r.FanoutStreams, r.Superseded)
	fmt.Fprintln(w, "met: live heap within 10% of the baseline; every other figure at most its budget")
	fmt.Fprintln(w, "budgets are stated for 100 clusters × 100 services × 10 endpoints at 100 changes/s, 5,000 streams, and "+
		"255 clusters × 1,000 endpoints for the new agent; latencies run from the etcd write (the publisher's share is in make bench)")
}
