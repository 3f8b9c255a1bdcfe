package register

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// maxDiscoveredRanges bounds what discovery proposes: MeshCluster allows 64 ranges;
// more than this many node pod CIDRs that do not merge are widened to /16s.
const maxDiscoveredRanges = 32

// Discovered is what DiscoverAddressRanges found in a member cluster.
type Discovered struct {
	// Ranges are the cluster's pod and service CIDRs, merged and sorted.
	Ranges []string
	// Notes say where each came from and what could not be read, for the operator.
	Notes []string
}

// DiscoverAddressRanges reads the address ranges a member cluster's endpoints use:
// its nodes' spec.podCIDRs and its ServiceCIDR objects (networking.k8s.io/v1). What it
// cannot read (no permission, an API server without ServiceCIDRs, a network plugin
// that does not set podCIDRs) it notes and skips; only a failure to reach the API
// server is an error.
func DiscoverAddressRanges(ctx context.Context, kube kubernetes.Interface) (Discovered, error) {
	var d Discovered
	var prefixes []netip.Prefix
	add := func(what, cidr string) {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			d.Notes = append(d.Notes, fmt.Sprintf("%s: %q is not a CIDR, skipped", what, cidr))
			return
		}
		prefixes = append(prefixes, p.Masked())
	}

	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		d.Notes = append(d.Notes, "nodes: not allowed to list them, so no pod CIDRs")
	case err != nil:
		return d, fmt.Errorf("list nodes: %w", err)
	default:
		n := 0
		for _, node := range nodes.Items {
			cidrs := node.Spec.PodCIDRs
			if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
				cidrs = []string{node.Spec.PodCIDR}
			}
			for _, c := range cidrs {
				add("node "+node.Name, c)
				n++
			}
		}
		d.Notes = append(d.Notes, fmt.Sprintf("nodes: %d pod CIDRs from %d nodes", n, len(nodes.Items)))
	}

	services, err := kube.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		d.Notes = append(d.Notes, "service CIDRs: not allowed to list ServiceCIDRs")
	case apierrors.IsNotFound(err):
		d.Notes = append(d.Notes, "service CIDRs: the API server has no ServiceCIDR objects (Kubernetes before 1.33)")
	case err != nil:
		return d, fmt.Errorf("list ServiceCIDRs: %w", err)
	default:
		n := 0
		for _, s := range services.Items {
			for _, c := range s.Spec.CIDRs {
				add("ServiceCIDR "+s.Name, c)
				n++
			}
		}
		d.Notes = append(d.Notes, fmt.Sprintf("service CIDRs: %d from %d ServiceCIDR objects", n, len(services.Items)))
	}

	merged := mergePrefixes(prefixes)
	if len(merged) > maxDiscoveredRanges {
		widened := make([]netip.Prefix, 0, len(merged))
		for _, p := range merged {
			if p.Addr().Is4() && p.Bits() > 16 {
				p, _ = p.Addr().Prefix(16)
			}
			widened = append(widened, p)
		}
		merged = mergePrefixes(widened)
		d.Notes = append(d.Notes, fmt.Sprintf("%d pod CIDRs do not merge into %d ranges: widened to /16s", len(prefixes), maxDiscoveredRanges))
	}
	for _, p := range merged {
		d.Ranges = append(d.Ranges, p.String())
	}
	return d, nil
}

// mergePrefixes returns the smallest sorted list of prefixes covering exactly the
// addresses of ps: duplicates and prefixes inside others dropped, sibling halves
// joined into their parent, repeatedly.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	for {
		slices.SortFunc(out, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		// Drop what the previous kept prefix covers: sorted by address, a covered
		// prefix follows its cover.
		kept := out[:0]
		for _, p := range out {
			if len(kept) > 0 && kept[len(kept)-1].Contains(p.Addr()) && kept[len(kept)-1].Bits() <= p.Bits() {
				continue
			}
			kept = append(kept, p)
		}
		out = kept
		joined := false
		for i := 0; i+1 < len(out); i++ {
			a, b := out[i], out[i+1]
			if a.Bits() != b.Bits() || a.Bits() == 0 || a.Addr().Is4() != b.Addr().Is4() {
				continue
			}
			parent, _ := a.Addr().Prefix(a.Bits() - 1)
			if parent.Addr() == a.Addr() && parent.Contains(b.Addr()) {
				out[i] = parent
				out = slices.Delete(out, i+1, i+2)
				joined = true
			}
		}
		if !joined {
			return out
		}
	}
}
