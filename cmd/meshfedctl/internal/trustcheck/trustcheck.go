// Package trustcheck is `meshfedctl trust check` and the judge of `meshfedctl trust
// rotate`: for every member cluster it checks that the trust bundle the cluster
// really serves (its meshfed-trust-bundle ConfigMap) holds exactly the hub's active
// roots, and that the intermediate its agent holds chains to one of them, names the
// cluster and is not due for renewal; and it names the roots involved — which root
// each cluster serves, which one its intermediate and its workloads' certificates
// (the agent's account, clusteragent.WorkloadCertsStatus) are under — so that every
// stage of a root rotation shows.
//
// Invariants:
//   - A check never passes without verifying something, and never passes over a
//     registered cluster in silence. Every MeshCluster on the hub gets a row; one
//     without a kubeconfig to reach it is "not checked" (with what the hub alone
//     knows of its intermediate) and fails the check, as does a check with no
//     cluster at all.
//   - Assess, which gates every rotation step, is pure and counts a cluster it could
//     not see as lagging: a step never advances over a cluster nobody looked at.
package trustcheck

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
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
	Cluster string `json:"cluster"`
	// Bundle: "ok", or what differs from the hub's roots.
	Bundle string `json:"bundle"`
	// Intermediate: "ok, expires …", or why not.
	Intermediate string `json:"intermediate"`
	OK           bool   `json:"ok"`
	// Checked: the cluster was reached and checked. A registered cluster without a
	// kubeconfig is not.
	Checked bool `json:"checked"`

	// Served names the roots the cluster serves (see Roots.Name); nil when it
	// serves no bundle.
	Served []string `json:"served"`
	// IntermediateRoot names the root the cluster's intermediate chains to; "" when
	// it has none that verifies.
	IntermediateRoot string `json:"intermediateRoot"`
	// Workloads is what the agent says its workloads' certificates hold; nil when
	// it issues none (or has not said).
	Workloads *Workloads `json:"workloads,omitempty"`
}

// Workloads is a cluster's workload certificates, from the agent's account.
type Workloads struct {
	Identities int `json:"identities"`
	// Root names the root their intermediate chains to.
	Root string `json:"root"`
	// Current: issued by the intermediate the cluster holds now.
	Current bool `json:"current"`
	// TrustServed: their ca.crt is the bundle the cluster serves.
	TrustServed bool `json:"trustServed"`
	// Since is when their files first held this state.
	Since time.Time `json:"since"`

	intermediate, bundle string // the agent's fingerprints
}

// Roots names the roots a check may meet: the hub's root Secrets (active or
// retired), by fingerprint.
type Roots map[string]string

// Name is the root's Secret name, "retired" noted, or "unknown <fingerprint>" for a
// root the hub never held.
func (r Roots) Name(cert *x509.Certificate) string { return r.nameOf(meshca.Fingerprint(cert)) }

func (r Roots) nameOf(fp string) string {
	if n, ok := r[fp]; ok {
		return n
	}
	if len(fp) > 16 {
		fp = fp[:16]
	}
	return "unknown " + fp
}

// Check checks every member against the hub's roots, and lists every cluster
// registered on the hub that is not among members as not checked.
func Check(ctx context.Context, hub *rest.Config, members []Member, now time.Time) ([]Result, error) {
	kube, err := hubinfo.NewClient(hub)
	if err != nil {
		return nil, err
	}
	registered := &v1.MeshClusterList{}
	if err := kube.List(ctx, registered); err != nil {
		return nil, fmt.Errorf("list the hub's MeshClusters: %w", err)
	}
	ca, err := meshca.NewClient(hub)
	if err != nil {
		return nil, err
	}
	active, err := meshca.Roots(ctx, ca)
	if err != nil {
		return nil, fmt.Errorf("the hub's roots: %w", err)
	}
	rootsPEM := meshca.BundleOf(active)
	roots, err := trust.ParseCertificates(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("the hub's roots: %w", err)
	}
	names, err := RootNames(ctx, ca)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, m := range members {
		out = append(out, checkMember(ctx, m, roots, rootsPEM, names, now))
	}
	return append(out, Unchecked(registered.Items, members)...), nil
}

// RootNames names every root Secret on the hub, active or retired (a Secret that
// carries meshca.RootLabel with any value), so that a cluster still serving a root
// retired by a rotation shows which.
func RootNames(ctx context.Context, ca *meshca.Client) (Roots, error) {
	ns := ca.Namespace
	if ns == "" {
		ns = meshca.DefaultNamespace
	}
	list, err := ca.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: meshca.RootLabel})
	if err != nil {
		return nil, fmt.Errorf("the hub's root Secrets: %w", err)
	}
	names := Roots{}
	for _, s := range list.Items {
		certs, err := trust.ParseCertificates(s.Data[corev1.TLSCertKey])
		if err != nil {
			continue // Roots refuses an active one that does not parse; a retired one names nothing
		}
		name := s.Name
		if s.Labels[meshca.RootLabel] != "true" {
			name += " (retired)"
		}
		names[meshca.Fingerprint(certs[0])] = name
	}
	return names, nil
}

// Unchecked are the results of the registered clusters that are not among members:
// not checked, so not OK, with the hub's own view of their intermediate (the
// MeshCluster's IntermediateCA condition), sorted by name.
func Unchecked(registered []v1.MeshCluster, members []Member) []Result {
	var out []Result
	for _, mc := range registered {
		if slices.ContainsFunc(members, func(m Member) bool { return m.Name == mc.Name }) {
			continue
		}
		r := Result{Cluster: mc.Name, Bundle: "not checked: no kubeconfig for the cluster (--cluster " + mc.Name + "=KUBECONFIG)",
			Intermediate: "hub: no IntermediateCA condition"}
		if c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionIntermediateCA); c != nil {
			r.Intermediate = fmt.Sprintf("hub: %s (%s)", c.Reason, c.Message)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}

// Verdict is the check's outcome: nil only when at least one cluster was checked and
// every result is OK. Nothing verified is a failure, never a pass.
func Verdict(results []Result) error {
	if len(results) == 0 {
		return errors.New("trust check verified nothing: no cluster is registered on the hub and none was given")
	}
	var unchecked, failed int
	for _, r := range results {
		switch {
		case !r.Checked:
			unchecked++
		case !r.OK:
			failed++
		}
	}
	switch {
	case unchecked == len(results):
		return fmt.Errorf("trust check verified nothing: none of the %d registered clusters was reached; pass --cluster NAME=KUBECONFIG for each (or --dir)", unchecked)
	case failed > 0 && unchecked > 0:
		return fmt.Errorf("trust check failed for %d clusters, and %d were not checked", failed, unchecked)
	case failed > 0:
		return errors.New("trust check failed")
	case unchecked > 0:
		return fmt.Errorf("trust check incomplete: registered clusters not checked: %d; pass --cluster NAME=KUBECONFIG for each", unchecked)
	}
	return nil
}

func checkMember(ctx context.Context, m Member, roots []*x509.Certificate, rootsPEM []byte, names Roots, now time.Time) Result {
	r := Result{Cluster: m.Name, Checked: true}
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
		for _, c := range served {
			r.Served = append(r.Served, names.Name(c))
		}
		missing, extra := diff(roots, served)
		switch {
		case perr != nil:
			r.Bundle = "served bundle does not parse: " + perr.Error()
		case missing+extra > 0:
			r.Bundle = fmt.Sprintf("differs from the hub's roots (%d missing, %d not active on the hub): %s",
				missing, extra, strings.Join(r.Served, ", "))
		default:
			r.Bundle, bundleOK = "ok: "+strings.Join(r.Served, ", "), true
		}
		r.Workloads = workloads(cm, names)
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
	var v *trust.Verified
	leaf, _, err := trust.IssueWorkload(ic, td, "meshfed-system", "trust-check", time.Minute)
	if err == nil {
		var id string
		if id, err = trust.WorkloadID(td, ic.Cluster, "meshfed-system", "trust-check"); err == nil {
			if v, err = trust.VerifyAt(leaf, rootsPEM, id, now); err == nil && v.Cluster != m.Name {
				err = fmt.Errorf("intermediate is cluster %q's", v.Cluster)
			}
		}
	}
	if r.Workloads != nil && len(inter) > 0 {
		r.Workloads.Current = r.Workloads.intermediate == meshca.Fingerprint(inter[0])
		r.Workloads.TrustServed = r.Workloads.bundle == clusteragent.Digest([]byte(cm.Data["ca.crt"]))
	}
	var unbound error
	if len(inter) > 0 {
		unbound = trust.CheckIntermediateBound(inter[0])
	}
	switch {
	case err != nil:
		r.Intermediate = "does not chain to the hub's roots: " + err.Error()
	case unbound != nil:
		// Chains, but may sign any cluster's identities: an intermediate from before
		// identities were bound to clusters, which the agent renews.
		r.IntermediateRoot = names.Name(v.Root)
		r.Intermediate = "under " + r.IntermediateRoot + ", not bound to the cluster (the agent renews it): " + unbound.Error()
	case len(inter) > 0 && trust.NeedsRenewal(inter[0], now):
		r.IntermediateRoot = names.Name(v.Root)
		r.Intermediate = "under " + r.IntermediateRoot + ", due for renewal, expires " + inter[0].NotAfter.UTC().Format(time.RFC3339)
	default:
		r.IntermediateRoot = names.Name(v.Root)
		r.Intermediate = "ok, under " + r.IntermediateRoot + ", expires " + inter[0].NotAfter.UTC().Format(time.RFC3339)
		r.OK = bundleOK
	}
	return r
}

// workloads reads the agent's account of its workload certificates from the trust
// bundle ConfigMap; nil when there is none or it does not parse.
func workloads(cm *corev1.ConfigMap, names Roots) *Workloads {
	raw, ok := cm.Annotations[clusteragent.WorkloadCertsAnnotation]
	if !ok {
		return nil
	}
	var st clusteragent.WorkloadCertsStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil
	}
	return &Workloads{Identities: st.Identities, Root: names.nameOf(st.Root), Since: st.Since,
		intermediate: st.Intermediate, bundle: st.Bundle}
}

// LeavesText describes r's workload certificates for a table.
func (r Result) LeavesText() string {
	w := r.Workloads
	switch {
	case !r.Checked:
		return "not checked"
	case w == nil:
		return "none issued by the agent"
	}
	s := fmt.Sprintf("%d under %s", w.Identities, w.Root)
	if !w.Current {
		s += " (a previous intermediate)"
	}
	if !w.TrustServed {
		s += ", trusting another bundle than served"
	}
	return s + ", since " + w.Since.UTC().Format(time.TimeOnly)
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
	fmt.Fprintln(tw, "CLUSTER\tOK\tSERVED BUNDLE\tINTERMEDIATE\tWORKLOAD CERTIFICATES")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t%s\n", r.Cluster, r.OK, r.Bundle, r.Intermediate, r.LeavesText())
	}
	return tw.Flush()
}
