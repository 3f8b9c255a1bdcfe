package check

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
)

// checkTrust runs `meshfedctl trust check` on the reachable members: each serves
// exactly the hub's active roots and holds an intermediate that chains to one. It
// checks nothing when no cluster has an intermediate (the hub runs without
// --mesh-ca).
func checkTrust(ctx context.Context, r *Report, clusters []v1.MeshCluster, opts Options) {
	meshCA := slices.ContainsFunc(clusters, func(mc v1.MeshCluster) bool {
		return meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionIntermediateCA) != nil
	})
	if !meshCA {
		r.ok(GroupTrust, "mesh CA", "not in use: no cluster has an intermediate (the hub runs without --mesh-ca)")
		return
	}
	results, err := trustcheck.Check(ctx, opts.Hub, opts.Members, opts.Now)
	if err != nil {
		r.fail(GroupTrust, "hub roots", err.Error(), "see the hub's mesh CA logs; meshfedctl trust check --hub-kubeconfig HUB")
		return
	}
	for _, res := range results {
		name := res.Cluster + " trust bundle"
		detail := "bundle " + res.Bundle + "; intermediate " + res.Intermediate
		switch {
		case !res.Checked:
			r.add(Result{Group: GroupTrust, Cluster: res.Cluster, Name: name, Status: Warn, Detail: "not checked: no kubeconfig for the cluster",
				Fix: "give --cluster " + res.Cluster + "=KUBECONFIG (or --dir of a sandbox)"})
		case res.OK:
			r.add(Result{Group: GroupTrust, Cluster: res.Cluster, Name: name, Status: OK, Detail: detail})
		default:
			r.add(Result{Group: GroupTrust, Cluster: res.Cluster, Name: name, Status: Fail, Detail: detail,
				Fix: "the agent syncs the bundle and renews its intermediate by itself: see its logs; during a root rotation follow meshfedctl trust rotate (docs/trust.md)"})
		}
	}
}
