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
	}
	return r, nil
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
	return tw.Flush()
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
