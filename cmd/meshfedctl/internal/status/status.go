package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// Report is the federation's state.
type Report struct {
	Clusters       []ClusterRow `json:"clusters"`
	GlobalServices []ServiceRow `json:"globalServices,omitempty"`
	Policies       []PolicyRow  `json:"policies,omitempty"`
}

// PolicyRow is one TrafficPolicy or AuthorizationPolicy and what each cluster's
// proxies did with it.
type PolicyRow struct {
	Kind          string `json:"kind"`
	Namespace     string `json:"namespace"`
	Name          string `json:"name"`
	GlobalService string `json:"globalService,omitempty"`
	Generation    int64  `json:"generation"`
	// Accepted and Programmed are the conditions' reasons (Unknown without one).
	Accepted   string `json:"accepted"`
	Programmed string `json:"programmed"`
	// Clusters is status.clusters: per cluster, the generation its proxies took or
	// why not.
	Clusters []v1.ClusterProgrammed `json:"clusters,omitempty"`
}

// ClusterRow is one member cluster.
type ClusterRow struct {
	Name       string `json:"name"`
	Region     string `json:"region"`
	Zones      string `json:"zones"`
	Network    string `json:"network"`
	Registered string `json:"registered"`
	Connected  string `json:"connected"`
	Synced     string `json:"synced"`
	// ViewInSync: the agent's imported view equals the hub's store (the
	// ViewInSync condition).
	ViewInSync string `json:"viewInSync"`
	// Published is the reason of the PublishedDataValid condition: Valid, or why the
	// hub refuses some of what the cluster publishes (Unknown without one).
	Published string `json:"published"`
	// Refused is PublishedDataValid's message while it is False: how much is refused,
	// for what, and one example.
	Refused string `json:"refused,omitempty"`
	// HeartbeatAge is the time since the hub last recorded a heartbeat, to the hub's
	// status resolution (15s).
	HeartbeatAge string `json:"heartbeatAge"`
	Services     int32  `json:"services"`
	Endpoints    int32  `json:"endpoints"`
	// Credentials is the reason of the CredentialsValid condition (Valid, Expiring,
	// Expired, Pending; Unknown without one) and, while the certificate is valid, the
	// time left until it expires ("Valid 19d4h").
	Credentials string `json:"credentials"`
	// CredentialsExpiry is when the agent's etcd certificate expires.
	CredentialsExpiry *time.Time `json:"credentialsExpiry,omitempty"`
	Message           string     `json:"message,omitempty"`
}

// ServiceRow is one global service.
type ServiceRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Hostname  string `json:"hostname"`
	// Providers are the clusters authorized to provide the service ("all").
	Providers string `json:"providers"`
	Clusters  int    `json:"clusters"`
	Ready     int32  `json:"readyEndpoints"`
	Policy    string `json:"policy,omitempty"`
	// Excluded are the clusters the hub left out of the service, with the reason
	// (the GlobalService's status.excluded).
	Excluded []v1.ExcludedCluster `json:"excluded,omitempty"`
	// HostnameConflict is the HostnameConflict condition's message while it is True:
	// which older GlobalService owns the hostname; this one is not served.
	HostnameConflict string `json:"hostnameConflict,omitempty"`
}

// Collect reads the report from the hub's API server.
func Collect(ctx context.Context, hub client.Client, now time.Time, withServices bool) (*Report, error) {
	clusters := &v1.MeshClusterList{}
	if err := hub.List(ctx, clusters); err != nil {
		return nil, fmt.Errorf("list MeshClusters: %w", err)
	}
	r := &Report{Clusters: []ClusterRow{}}
	for _, mc := range clusters.Items {
		row := ClusterRow{
			Name: mc.Name, Region: string(mc.Spec.Region), Network: mc.Spec.Network,
			Registered:   condition(&mc, v1.ConditionRegistered),
			Connected:    condition(&mc, v1.ConditionConnected),
			Synced:       condition(&mc, v1.ConditionSynced),
			ViewInSync:   condition(&mc, v1.ConditionViewInSync),
			Published:    "Unknown",
			HeartbeatAge: "never",
			Services:     mc.Status.ExportedServices, Endpoints: mc.Status.ExportedEndpoints,
		}
		zones := make([]string, len(mc.Spec.Zones))
		for i, z := range mc.Spec.Zones {
			zones[i] = string(z)
		}
		row.Zones = strings.Join(zones, ",")
		if hb := mc.Status.LastHeartbeatTime; hb != nil {
			row.HeartbeatAge = now.Sub(hb.Time).Round(time.Second).String()
		}
		if c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionConnected); c != nil && c.Status != metav1.ConditionTrue {
			row.Message = c.Message
		} else if c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionViewInSync); c != nil && c.Status == metav1.ConditionFalse {
			row.Message = c.Message
		}
		if c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPublishedDataValid); c != nil {
			row.Published = c.Reason
			if c.Status == metav1.ConditionFalse {
				row.Refused = c.Message
			}
		}
		row.Credentials, row.CredentialsExpiry = credentials(&mc, now)
		r.Clusters = append(r.Clusters, row)
	}
	if withServices {
		services := &v1.GlobalServiceList{}
		if err := hub.List(ctx, services); err != nil {
			return nil, fmt.Errorf("list GlobalServices: %w", err)
		}
		for _, gs := range services.Items {
			row := ServiceRow{Namespace: gs.Namespace, Name: gs.Name, Hostname: gs.Status.Hostname, Providers: gs.Status.Providers,
				Clusters: len(gs.Status.Clusters), Ready: gs.Status.ReadyEndpoints, Excluded: gs.Status.Excluded}
			if c := meta.FindStatusCondition(gs.Status.Conditions, v1.ConditionHostnameConflict); c != nil && c.Status == metav1.ConditionTrue {
				row.HostnameConflict = c.Message
			}
			if gs.Spec.FailoverPolicyRef != nil {
				row.Policy = gs.Spec.FailoverPolicyRef.Name
			}
			r.GlobalServices = append(r.GlobalServices, row)
		}
		policies, err := collectPolicies(ctx, hub)
		if err != nil {
			return nil, err
		}
		r.Policies = policies
	}
	return r, nil
}

// collectPolicies reads the traffic and authorization policies; none from a hub
// whose API server does not know the kinds (an older release).
func collectPolicies(ctx context.Context, hub client.Client) ([]PolicyRow, error) {
	var out []PolicyRow
	row := func(kind string, o metav1.Object, gs string, st v1.PolicyStatus) PolicyRow {
		reason := func(t string) string {
			if c := meta.FindStatusCondition(st.Conditions, t); c != nil && c.ObservedGeneration == o.GetGeneration() {
				return c.Reason
			}
			return "Unknown"
		}
		return PolicyRow{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName(), GlobalService: gs, Generation: o.GetGeneration(),
			Accepted: reason(v1.ConditionAccepted), Programmed: reason(v1.ConditionProgrammed), Clusters: st.Clusters}
	}
	traffic := &v1.TrafficPolicyList{}
	if err := hub.List(ctx, traffic); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("list TrafficPolicies: %w", err)
	}
	for i := range traffic.Items {
		p := &traffic.Items[i]
		out = append(out, row("TrafficPolicy", p, string(p.Spec.GlobalService), p.Status))
	}
	authz := &v1.AuthorizationPolicyList{}
	if err := hub.List(ctx, authz); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("list AuthorizationPolicies: %w", err)
	}
	for i := range authz.Items {
		p := &authz.Items[i]
		out = append(out, row("AuthorizationPolicy", p, string(p.Spec.GlobalService), p.Status))
	}
	return out, nil
}

// perCluster is the PROGRAMMED column's detail: each reporting cluster and whether
// its proxies took the policy's generation ("alpha ok, beta refused, gamma g3").
func perCluster(p PolicyRow) string {
	if len(p.Clusters) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(p.Clusters))
	for _, c := range p.Clusters {
		state := "ok"
		switch {
		case c.Generation != p.Generation:
			state = fmt.Sprintf("g%d", c.Generation)
		case !c.Programmed && strings.HasPrefix(c.Message, "refused"):
			state = "refused"
		case !c.Programmed:
			state = "pending"
		}
		parts = append(parts, c.Cluster+" "+state)
	}
	return strings.Join(parts, ", ")
}

// credentials is the CREDENTIALS column: CredentialsValid's reason, with the time
// left while the certificate is valid.
func credentials(mc *v1.MeshCluster, now time.Time) (string, *time.Time) {
	c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionCredentialsValid)
	if c == nil {
		return "Unknown", nil
	}
	e := mc.Status.CredentialsExpiry
	if e == nil {
		return c.Reason, nil
	}
	expiry := e.Time
	if left := expiry.Sub(now); left > 0 && c.Reason != v1.ReasonCredentialsExpired {
		return c.Reason + " " + ShortDuration(left), &expiry
	}
	return c.Reason, &expiry
}

// ShortDuration is d in days and hours, hours and minutes, or minutes and seconds.
func ShortDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	default:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
}

func condition(mc *v1.MeshCluster, t string) string {
	if c := meta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

// Print writes the report as a table, json or yaml.
func (r *Report) Print(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "yaml":
		data, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case "", "table":
	default:
		return fmt.Errorf("output format %q: use table, json or yaml", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREGION\tZONES\tNETWORK\tREGISTERED\tCONNECTED\tSYNCED\tVIEW\tPUBLISHED\tHEARTBEAT\tSERVICES\tENDPOINTS\tCREDENTIALS")
	for _, c := range r.Clusters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", c.Name, c.Region, c.Zones, c.Network,
			c.Registered, c.Connected, c.Synced, c.ViewInSync, c.Published, c.HeartbeatAge, c.Services, c.Endpoints, c.Credentials)
	}
	printRefused(tw, r.Clusters)
	if len(r.GlobalServices) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "GLOBAL SERVICE\tHOSTNAME\tPROVIDERS\tCLUSTERS\tREADY\tPOLICY")
		for _, s := range r.GlobalServices {
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d\t%d\t%s\n", s.Namespace, s.Name, s.Hostname, s.Providers, s.Clusters, s.Ready, s.Policy)
		}
		printExcluded(tw, r.GlobalServices)
		printConflicts(tw, r.GlobalServices)
	}
	if len(r.Policies) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "POLICY\tKIND\tSERVICE\tGEN\tACCEPTED\tPROGRAMMED\tCLUSTERS")
		for _, p := range r.Policies {
			gs := p.GlobalService
			if gs == "" {
				gs = "(namespace)"
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Kind, gs, p.Generation, p.Accepted, p.Programmed, perCluster(p))
		}
		printNotProgrammed(tw, r.Policies)
	}
	return tw.Flush()
}

// printNotProgrammed lists, under the policies, each cluster whose proxies refused a
// policy's generation or have not taken it, with the message.
func printNotProgrammed(w io.Writer, policies []PolicyRow) {
	header := false
	for _, p := range policies {
		for _, c := range p.Clusters {
			if c.Programmed && c.Generation == p.Generation {
				continue
			}
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(w, "NOT PROGRAMMED\tCLUSTER\tGEN\tMESSAGE")
				header = true
			}
			fmt.Fprintf(w, "%s/%s\t%s\t%d\t%s\n", p.Namespace, p.Name, c.Cluster, c.Generation, c.Message)
		}
	}
}

// printRefused lists, under the clusters, what the hub refuses of each cluster's
// published data (PublishedDataValid False); nothing when it refuses nothing.
func printRefused(w io.Writer, clusters []ClusterRow) {
	header := false
	for _, c := range clusters {
		if c.Refused == "" {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "REFUSED\tREASON\tMESSAGE")
			header = true
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", c.Name, c.Published, c.Refused)
	}
}

// printConflicts lists the global services not served because an older one owns
// their hostname.
func printConflicts(w io.Writer, services []ServiceRow) {
	header := false
	for _, s := range services {
		if s.HostnameConflict == "" {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "HOSTNAME CONFLICT\tHOSTNAME\tMESSAGE")
			header = true
		}
		fmt.Fprintf(w, "%s/%s\t%s\t%s\n", s.Namespace, s.Name, s.Hostname, s.HostnameConflict)
	}
}

// printExcluded lists, under the services, every cluster a service leaves out and why;
// nothing when none is.
func printExcluded(w io.Writer, services []ServiceRow) {
	header := false
	for _, s := range services {
		for _, e := range s.Excluded {
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(w, "EXCLUDED\tCLUSTER\tPORT\tREASON\tMESSAGE")
				header = true
			}
			fmt.Fprintf(w, "%s/%s\t%s\t%d\t%s\t%s\n", s.Namespace, s.Name, e.Cluster, e.Port, e.Reason, e.Message)
		}
	}
}
