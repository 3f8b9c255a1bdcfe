package policyexplain

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

// Print writes r as text or json.
func (r *Result) Print(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "", "text":
	default:
		return fmt.Errorf("output format %q: use text or json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	method := r.Method
	if method == "" {
		method = "(no method: rules and routes that name methods do not match)"
	}
	fmt.Fprintf(tw, "call\t%s → %s %s\n", r.Caller, r.Service, method)
	if len(r.Headers) > 0 {
		var hs []string
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			for _, v := range r.Headers[k] {
				hs = append(hs, k+"="+v)
			}
		}
		fmt.Fprintf(tw, "headers\t%s\n", strings.Join(hs, " "))
	}
	fmt.Fprintf(tw, "computed from\tcluster %s's agent (%s view): the records its xDS server serves\n", r.View.Cluster, r.View.Source)
	fmt.Fprintln(tw)
	a := r.Authorization
	verdict := "DENIED"
	if a.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(tw, "authorization\t%s by %s\n", verdict, a.DecidedBy)
	policies := "none"
	if len(a.Policies) > 0 {
		policies = strings.Join(a.Policies, ", ")
	}
	fmt.Fprintf(tw, "  policies\t%s (namespace default %s)\n", policies, a.NamespaceDefault)
	fmt.Fprintln(tw)
	g := r.Routing
	switch {
	case g.TrafficPolicy == "":
		fmt.Fprintf(tw, "route\tnone: the service has no TrafficPolicy\n")
	case g.Route == "":
		fmt.Fprintf(tw, "route\tnone of %s matches: the service's defaults\n", g.TrafficPolicy)
	default:
		fmt.Fprintf(tw, "route\t%s (TrafficPolicy %s)\n", g.Route, g.TrafficPolicy)
	}
	timeout := "none"
	if g.Timeout.Duration > 0 {
		timeout = g.Timeout.Duration.String() + " (the whole call, retries included)"
	}
	fmt.Fprintf(tw, "  timeout\t%s\n", timeout)
	fmt.Fprintf(tw, "  retries\t%s\n", retries(g.Retries))
	fmt.Fprintf(tw, "  fault\t%s\n", fault(g.Fault))
	lb := g.LoadBalancer.Policy
	if g.LoadBalancer.HashHeader != "" {
		lb += ", hash on header " + g.LoadBalancer.HashHeader
	}
	fmt.Fprintf(tw, "  load balancing\t%s\n", lb)
	if o := g.OutlierDetection; o != nil {
		fmt.Fprintf(tw, "  outlier detection\t%d errors in a row, every %s, ejected %s, at most %d%%\n",
			o.ConsecutiveErrors, o.Interval.Duration, o.BaseEjectionTime.Duration, o.MaxEjectionPercent)
	}
	if len(g.Split) == 0 {
		fmt.Fprintf(tw, "  split\tnone: any endpoint, %s\n", counts(g.Endpoints))
	}
	for i, s := range g.Split {
		label := ""
		if i == 0 {
			label = "  split"
		}
		name := s.Subset
		if name == "" {
			name = `"" (in no subset)`
		}
		fmt.Fprintf(tw, "%s\t%3d%% %s: %s\n", label, s.Weight, name, counts(s.Endpoints))
	}
	if len(r.Policies) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "POLICY\tSERVED\tGENERATION\tACCEPTED\tRESOLVEDREFS\tPROGRAMMED\tMESSAGE")
		for _, p := range r.Policies {
			fmt.Fprintf(tw, "%s %s/%s\t%v\t%d/%d\t%s\t%s\t%s\t%s\n", p.Kind, p.Namespace, p.Name, p.Served,
				p.ObservedGeneration, p.Generation, p.Accepted, p.ResolvedRefs, p.Programmed, p.Message)
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(tw)
		for _, w := range r.Warnings {
			fmt.Fprintf(tw, "⚠ %s\n", w)
		}
	}
	return tw.Flush()
}

func retries(r *model.Retries) string {
	if r == nil {
		return "none"
	}
	out := fmt.Sprintf("%d after the first try, on %s, backoff %s to %s", r.Attempts, strings.Join(r.On, ", "),
		r.BackoffBase.Duration, r.BackoffMax.Duration)
	if reflect.DeepEqual(r, policy.FailoverRetries()) {
		out += " (meshfed's failover retry)"
	}
	return out
}

func fault(f *model.Fault) string {
	if f == nil {
		return "none"
	}
	var parts []string
	if d := f.Delay; d != nil {
		parts = append(parts, fmt.Sprintf("delay %s of calls by %s", percent(d.PerMillion), d.Duration.Duration))
	}
	if a := f.Abort; a != nil {
		parts = append(parts, fmt.Sprintf("abort %s of calls with %s", percent(a.PerMillion), a.Code))
	}
	return strings.Join(parts, "; ")
}

// percent is calls per million as a percentage, to the four decimals the API takes.
func percent(perMillion int32) string {
	s := fmt.Sprintf("%d.%04d", perMillion/10_000, perMillion%10_000)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".") + "%"
}

func counts(l []ClusterEndpoints) string {
	if len(l) == 0 {
		return "no endpoint now"
	}
	parts := make([]string, len(l))
	for i, c := range l {
		parts[i] = fmt.Sprintf("%s %d/%d ready", c.Cluster, c.Ready, c.Total)
	}
	return strings.Join(parts, ", ")
}
