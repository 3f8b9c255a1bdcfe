// Package trustcheck is `meshfedctl trust check`: for every member cluster it checks
// that the trust bundle the cluster really serves (its meshfed-trust-bundle
// ConfigMap) holds exactly the hub's active roots, and that the intermediate its agent
// holds chains to one of them, names the cluster and is not due for renewal.
package trustcheck

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/meshca"
)

// Member is a member cluster to check.
type Member struct {
	Name   string
	Config *rest.Config
}

// Result is the verdict on one cluster.
type Result struct {
	Cluster string
	// Bundle: "ok", or what differs from the hub's roots.
	Bundle string
	// Intermediate: "ok, expires …", or why not.
	Intermediate string
	OK           bool
}

// Check checks every member against the hub's roots.
func Check(ctx context.Context, hub *rest.Config, members []Member, now time.Time) ([]Result, error) {
	ca, err := meshca.NewClient(hub)
	if err != nil {
		return nil, err
	}
	rootsPEM, err := meshca.Bundle(ctx, ca)
	if err != nil {
		return nil, fmt.Errorf("the hub's roots: %w", err)
	}
	roots, err := trust.ParseCertificates(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("the hub's roots: %w", err)
	}
	var out []Result
	for _, m := range members {
		out = append(out, checkMember(ctx, m, roots, rootsPEM, now))
	}
	return out, nil
}

func checkMember(ctx context.Context, m Member, roots []*x509.Certificate, rootsPEM []byte, now time.Time) Result {
	r := Result{Cluster: m.Name}
	kube, err := kubernetes.NewForConfig(m.Config)
	if err != nil {
		r.Bundle = err.Error()
		return r
	}
	cm, err := kube.CoreV1().ConfigMaps(hubinfo.Namespace).Get(ctx, clusteragent.TrustBundleConfigMap, metav1.GetOptions{})
	bundleOK := false
	switch {
	case err != nil:
		r.Bundle = "no trust bundle served: " + err.Error()
	default:
		served, perr := trust.ParseCertificates([]byte(cm.Data["ca.crt"]))
		missing, extra := diff(roots, served)
		switch {
		case perr != nil:
			r.Bundle = "served bundle does not parse: " + perr.Error()
		case missing+extra > 0:
			r.Bundle = fmt.Sprintf("differs from the hub's roots: %d missing, %d not active on the hub", missing, extra)
		default:
			r.Bundle, bundleOK = fmt.Sprintf("ok (%d roots)", len(served)), true
		}
	}
	sec, err := kube.CoreV1().Secrets(hubinfo.Namespace).Get(ctx, clusteragent.IntermediateSecret, metav1.GetOptions{})
	if err != nil || len(sec.Data[corev1.TLSCertKey]) == 0 {
		r.Intermediate = "no signed intermediate in the cluster"
		return r
	}
	chain := sec.Data[corev1.TLSCertKey]
	ic, err := trust.LoadIntermediate(chain, sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		r.Intermediate = "intermediate does not load: " + err.Error()
		return r
	}
	inter, _ := trust.ParseCertificates(chain)
	td := ""
	if len(inter) > 0 && len(inter[0].URIs) > 0 {
		td = inter[0].URIs[0].Host // spiffe://<trust domain>/cluster/<cluster>
	}
	// Verify the intermediate through a throwaway leaf: the path workloads' take.
	leaf, _, err := trust.IssueWorkload(ic, td, "meshfed-system", "trust-check", time.Minute)
	if err == nil {
		var id string
		if id, err = trust.WorkloadID(td, "meshfed-system", "trust-check"); err == nil {
			var v *trust.Verified
			if v, err = trust.VerifyAt(leaf, rootsPEM, id, now); err == nil && v.Cluster != m.Name {
				err = fmt.Errorf("intermediate is cluster %q's", v.Cluster)
			}
		}
	}
	switch {
	case err != nil:
		r.Intermediate = "does not chain to the hub's roots: " + err.Error()
	case len(inter) > 0 && trust.NeedsRenewal(inter[0], now):
		r.Intermediate = "due for renewal, expires " + inter[0].NotAfter.UTC().Format(time.RFC3339)
	default:
		r.Intermediate = "ok, expires " + inter[0].NotAfter.UTC().Format(time.RFC3339)
		r.OK = bundleOK
	}
	return r
}

func diff(want, got []*x509.Certificate) (missing, extra int) {
	has := func(list []*x509.Certificate, c *x509.Certificate) bool {
		return slices.ContainsFunc(list, func(d *x509.Certificate) bool { return bytes.Equal(d.Raw, c.Raw) })
	}
	for _, c := range want {
		if !has(got, c) {
			missing++
		}
	}
	for _, c := range got {
		if !has(want, c) {
			extra++
		}
	}
	return missing, extra
}

// Print writes the results as a table.
func Print(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tOK\tSERVED BUNDLE\tINTERMEDIATE")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\n", r.Cluster, r.OK, r.Bundle, r.Intermediate)
	}
	return tw.Flush()
}
