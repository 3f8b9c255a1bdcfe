package locality

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// String renders the table for `meshfedctl failover explain`: the client, the policy
// settings in effect and the rule that matched, then one row per locality with the
// columns PRIORITY, CLUSTER, REGION, ZONE, HEALTHY/TOTAL, WEIGHT, SHARE% (of its
// priority's traffic) and REASON. Excluded localities follow, with "-" as priority.
func (t Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client:  cluster %s, region %s, zone %s\n",
		dash(t.Client.Cluster), dash(t.Client.Region), dash(t.Client.Zone))
	name := "default"
	if t.Policy != nil {
		name = t.Policy.Namespace + "/" + t.Policy.Name
	}
	fmt.Fprintf(&b, "policy:  %s (localityPreference %s, fallbackToAny %t, minHealthyPercent %d)\n",
		name, t.Preference, t.FallbackToAny, t.MinHealthyPercent)
	fmt.Fprintf(&b, "rule:    %s\n\n", t.rule())

	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PRIORITY\tCLUSTER\tREGION\tZONE\tHEALTHY/TOTAL\tWEIGHT\tSHARE%\tREASON")
	for p, es := range t.Priorities {
		s := sum(es)
		for _, e := range es {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d/%d\t%d\t%.1f\t%s\n", p,
				dash(e.Cluster), dash(e.Region), dash(e.Zone), e.Healthy, e.Total,
				e.Weight, float64(e.Weight)*100/float64(s), e.Reason)
		}
	}
	for _, e := range t.Excluded {
		fmt.Fprintf(w, "-\t%s\t%s\t%s\t%d/%d\t-\t-\texcluded: %s\n",
			dash(e.Cluster), dash(e.Region), dash(e.Zone), e.Healthy, e.Total, e.Reason)
	}
	_ = w.Flush() // a strings.Builder does not fail
	if len(t.Priorities) == 0 {
		b.WriteString("\nno priorities: the client has no endpoint to send requests to\n")
	}
	return b.String()
}

// rule describes the failover or distribute rule that applies to the client.
func (t Table) rule() string {
	var b strings.Builder
	switch {
	case t.Failover != nil:
		b.WriteString("failover from ")
		b.WriteString(selector(t.Failover.From))
		b.WriteString(" to ")
		for i, to := range t.Failover.To {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d. %s", i+1, selector(to))
		}
	case t.Distribute != nil:
		fmt.Fprintf(&b, "distribute from %s: ", t.Distribute.From)
		for i, to := range t.Distribute.To {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d%%", to.Locality, to.Weight)
		}
	default:
		b.WriteString("none (no failover or distribute rule for this client)")
	}
	return b.String()
}

func selector(l model.Locality) string {
	if l.Cluster != "" {
		return "cluster " + l.Cluster
	}
	return "region " + l.Region
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
