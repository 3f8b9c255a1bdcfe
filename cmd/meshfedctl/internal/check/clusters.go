package check

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/status"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/version"
)

// checkClusters judges every MeshCluster from its status: registration, heartbeat,
// initial publish, published data, the agent's etcd credentials (and the certificate
// in its Secret when the member cluster is reachable) and its intermediate. It
// returns the clusters, sorted by name.
func checkClusters(ctx context.Context, r *Report, h *hub, opts Options) []v1.MeshCluster {
	list := &v1.MeshClusterList{}
	if err := h.client.List(ctx, list); err != nil {
		r.fail(GroupClusters, "registered clusters", "list MeshClusters: "+err.Error(), "grant the operator list on meshclusters.meshfed.io, or "+fixCRDs)
		return nil
	}
	clusters := list.Items
	slices.SortFunc(clusters, func(a, b v1.MeshCluster) int { return strings.Compare(a.Name, b.Name) })
	if len(clusters) == 0 {
		r.warn(GroupClusters, "registered clusters", "none", "meshfedctl cluster register NAME --region … --zones … --kubeconfig MEMBER --hub-kubeconfig HUB")
		return nil
	}
	names := make([]string, len(clusters))
	for i, mc := range clusters {
		names[i] = mc.Name
	}
	r.ok(GroupClusters, "registered clusters", strings.Join(names, ", "))
	for i := range clusters {
		checkCluster(ctx, r, &clusters[i], h.version, opts)
	}
	return clusters
}

func checkCluster(ctx context.Context, r *Report, mc *v1.MeshCluster, hubVersion string, opts Options) {
	name := mc.Name
	add := func(what string, s Status, detail, fix string) {
		r.add(Result{Group: GroupClusters, Cluster: name, Name: name + " " + what, Status: s, Detail: detail, Fix: fix})
	}
	cond := func(t string) *metav1.Condition { return meta.FindStatusCondition(mc.Status.Conditions, t) }
	register := "meshfedctl cluster register " + name + " --region " + string(mc.Spec.Region) + " … --hub-kubeconfig HUB (idempotent)"

	switch c := cond(v1.ConditionRegistered); {
	case c == nil:
		add("registration", Fail, "the hub has not reported it (no Registered condition)", "check that meshfed hub runs; see its logs")
	case c.Status == metav1.ConditionTrue:
		add("registration", OK, "registered", "")
	case c.Reason == v1.ReasonRevoked:
		add("registration", Fail, "revoked: "+c.Message, "to re-admit it: "+register)
	default:
		add("registration", Fail, c.Reason+": "+c.Message, "see the hub's logs; it retries by itself")
	}

	age := "no heartbeat recorded"
	if hb := mc.Status.LastHeartbeatTime; hb != nil {
		age = "last heartbeat " + opts.Now.Sub(hb.Time).Round(time.Second).String() + " ago"
	}
	agentDown := "the agent of " + name + " is not heartbeating: check its pod in the member cluster " +
		"(kubectl -n " + hubinfo.Namespace + " get pods; its logs) and that it reaches the hub's etcd"
	switch c := cond(v1.ConditionConnected); {
	case c == nil:
		add("heartbeat", Fail, age+" (no Connected condition)", agentDown)
	case c.Status == metav1.ConditionTrue:
		add("heartbeat", OK, "connected, "+age, "")
	default:
		add("heartbeat", Fail, c.Reason+": "+age, agentDown)
	}

	status, detail, fix := agentVersion(name, mc.Status.AgentVersion, hubVersion)
	add("agent version", status, detail, fix)

	switch c := cond(v1.ConditionSynced); {
	case c != nil && c.Status == metav1.ConditionTrue:
		add("synced", OK, "initial publish complete", "")
	case c != nil:
		add("synced", Fail, c.Reason+": "+c.Message, "the agent has not completed its initial publish: see its logs")
	default:
		add("synced", Fail, "no Synced condition", "the agent has not completed its initial publish: see its logs")
	}

	switch c := cond(v1.ConditionPublishedDataValid); {
	case c == nil:
		add("published data", Warn, "not judged yet (no PublishedDataValid condition)", "run again in a minute; if it persists, see the hub's logs")
	case c.Status == metav1.ConditionTrue:
		add("published data", OK, "every record accepted", "")
	default:
		add("published data", Fail, c.Reason+": "+c.Message,
			"a legitimate change: update the MeshCluster (--address-ranges, spec.zones, spec.limits); otherwise find who writes it in the member cluster (docs/operations.md, Refused data)")
	}

	checkCredentials(ctx, r, mc, opts, add, register)

	if c := cond(v1.ConditionIntermediateCA); c != nil {
		renew := "the agent renews its intermediate by itself: see its logs and the hub's mesh CA (meshfedctl trust check)"
		expiry := ""
		if e := mc.Status.IntermediateCAExpiry; e != nil {
			expiry = "expires " + e.UTC().Format(time.RFC3339) + " (" + left(e.Time, opts.Now) + ")"
		}
		switch {
		case c.Reason == v1.ReasonIntermediateExpired:
			add("intermediate", Fail, "expired "+expiry+": "+c.Message, "workloads get no new certificates: "+renew)
		case c.Reason == v1.ReasonIntermediateInvalid:
			add("intermediate", Fail, "invalid: "+c.Message, renew)
		case c.Status != metav1.ConditionTrue:
			add("intermediate", Warn, c.Reason+" "+expiry+": "+c.Message, renew)
		case mc.Status.IntermediateCAExpiry != nil && mc.Status.IntermediateCAExpiry.Sub(opts.Now) < opts.WarnBefore:
			add("intermediate", Warn, expiry, renew)
		default:
			add("intermediate", OK, "valid, "+expiry, "")
		}
	}
}

// agentVersion judges the build an agent reported (status.agentVersion) against the
// hub's: unknown fails (the agent never reported one), another release than the
// hub's is version skew, a warning. A hub that publishes no version cannot be
// compared with.
func agentVersion(cluster, agent, hub string) (Status, string, string) {
	switch {
	case agent == "":
		return Fail, "unknown: the agent has not reported its version",
			"check the agent of " + cluster + " is running (kubectl -n " + hubinfo.Namespace + " get pods in " + cluster +
				"); if it is, it predates version reports: upgrade the agent (helm upgrade meshfed deploy/charts/meshfed in " + cluster + ")"
	case hub == "":
		return Warn, agent + "; the hub does not publish its version",
			"upgrade the hub: it predates version reports (helm upgrade meshfed deploy/charts/meshfed on the hub)"
	case version.Release(agent) != version.Release(hub):
		return Warn, fmt.Sprintf("%s, the hub runs %s: version skew", agent, hub),
			fmt.Sprintf("upgrade meshfed-agent in %s to %s (helm upgrade meshfed deploy/charts/meshfed --kube-context %s --reuse-values --set image.tag=%s)",
				cluster, version.Release(hub), cluster, version.Release(hub))
	default:
		return OK, agent + ", as the hub", ""
	}
}

// checkCredentials judges the agent's etcd client certificate: the hub's record
// (CredentialsValid, status.credentialsExpiry) and, when the member cluster is
// reachable, the certificate in the agent's Secret, whichever expires first.
func checkCredentials(ctx context.Context, r *Report, mc *v1.MeshCluster, opts Options, add func(string, Status, string, string), register string) {
	c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionCredentialsValid)
	if c == nil {
		add("credentials", Warn, "no CredentialsValid condition", "run again in a minute; if it persists, see the hub's logs")
		return
	}
	var expiry *time.Time
	if e := mc.Status.CredentialsExpiry; e != nil {
		t := e.Time
		expiry = &t
	}
	detail := c.Reason
	if expiry != nil {
		detail += ", expires " + expiry.UTC().Format(time.RFC3339) + " (" + left(*expiry, opts.Now) + ")"
	}
	// The hub's record is the certificate it signed last; the Secret holds the one
	// the agent uses. Judge by the earlier.
	if m := member(opts.Members, mc.Name); m != nil {
		secret := "the agent's Secret " + hubinfo.Namespace + "/" + agentcreds.SecretName
		switch notAfter, err := secretExpiry(ctx, m); {
		case err != nil:
			detail += "; " + secret + ": " + err.Error()
		case expiry != nil && notAfter.Equal(*expiry):
			detail += ", the certificate in " + secret
		default:
			detail += "; " + secret + " holds one that expires " + notAfter.UTC().Format(time.RFC3339) + " (" + left(notAfter, opts.Now) + ")"
			if expiry == nil || notAfter.Before(*expiry) {
				expiry = &notAfter
			}
		}
	}
	renew := "the agent renews at two thirds of the certificate's life: check its logs and meshfed_agent_etcd_client_cert_renewals_total{result=\"Failed\"}"
	switch {
	case c.Reason == v1.ReasonCredentialsExpired || (expiry != nil && !expiry.After(opts.Now)):
		add("credentials", Fail, detail, "the agent cannot reach the hub's etcd any more: "+register+", then restart the agent")
	case c.Reason == v1.ReasonCredentialsInvalid:
		add("credentials", Fail, detail+": "+c.Message, register)
	case c.Status != metav1.ConditionTrue:
		add("credentials", Warn, detail+": "+c.Message, renew)
	case expiry != nil && expiry.Sub(opts.Now) < opts.WarnBefore:
		add("credentials", Warn, detail+": about to expire", renew+"; if it does not renew before expiry: "+register)
	default:
		add("credentials", OK, detail, "")
	}
}

// secretExpiry is when the certificate in the agent's credentials Secret expires.
func secretExpiry(ctx context.Context, m *trustcheck.Member) (time.Time, error) {
	kube, err := kubernetes.NewForConfig(m.Config)
	if err != nil {
		return time.Time{}, err
	}
	creds, err := agentcreds.Load(ctx, kube, hubinfo.Namespace)
	if err != nil {
		return time.Time{}, err
	}
	cert, err := creds.Certificate()
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

func member(members []trustcheck.Member, name string) *trustcheck.Member {
	for i := range members {
		if members[i].Name == name {
			return &members[i]
		}
	}
	return nil
}

// left is the time from now to t, rounded ("19d4h left", "expired 3m ago").
func left(t, now time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + status.ShortDuration(-d) + " ago"
	}
	return status.ShortDuration(d) + " left"
}
