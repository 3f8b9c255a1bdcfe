package register

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/dev/localkube"
)

func TestMergePrefixes(t *testing.T) {
	tests := map[string]struct{ in, want []string }{
		"empty":                    {nil, nil},
		"duplicates":               {[]string{"10.1.0.0/24", "10.1.0.0/24"}, []string{"10.1.0.0/24"}},
		"siblings join":            {[]string{"10.1.1.0/24", "10.1.0.0/24"}, []string{"10.1.0.0/23"}},
		"four join twice":          {[]string{"10.1.3.0/24", "10.1.0.0/24", "10.1.2.0/24", "10.1.1.0/24"}, []string{"10.1.0.0/22"}},
		"neighbours not siblings":  {[]string{"10.1.1.0/24", "10.1.2.0/24"}, []string{"10.1.1.0/24", "10.1.2.0/24"}},
		"inside another":           {[]string{"10.1.5.0/24", "10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		"families apart":           {[]string{"fd00:10:244::/64", "10.96.0.0/16", "fd00:10:244:1::/64"}, []string{"10.96.0.0/16", "fd00:10:244::/63"}},
		"different lengths stay":   {[]string{"10.1.0.0/24", "10.1.1.0/25"}, []string{"10.1.0.0/24", "10.1.1.0/25"}},
		"cover after its contents": {[]string{"10.1.0.0/25", "10.1.0.128/25", "10.1.0.0/24"}, []string{"10.1.0.0/24"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var in []netip.Prefix
			for _, s := range tc.in {
				in = append(in, netip.MustParsePrefix(s))
			}
			var got []string
			for _, p := range mergePrefixes(in) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("mergePrefixes(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestDiscoverAddressRanges reads a real API server's nodes and ServiceCIDRs (the
// default one, from --service-cluster-ip-range, and one added), as Register does.
func TestDiscoverAddressRanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp := localkube.ForTest(t, "member")[0]
	kube := kubernetes.NewForConfigOrDie(cp.Config)

	d, err := DiscoverAddressRanges(ctx, kube)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without nodes: %v %q", d.Ranges, d.Notes)
	if !slices.Contains(d.Ranges, "10.96.0.0/16") {
		t.Errorf("ranges %v lack the default service CIDR 10.96.0.0/16", d.Ranges)
	}

	// 40 nodes with /24s from 10.244.0.0/16 (the last dual-stack), as a
	// node IPAM controller allocates them.
	for i := range 40 {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
			Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", i), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i)}}}
		if i == 39 {
			node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, "fd00:10:244:27::/64")
		}
		if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.97.0.0/24"}}}
	if _, err := kube.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err = DiscoverAddressRanges(ctx, kube)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with nodes: %v %q", d.Ranges, d.Notes)
	want := []string{"10.96.0.0/16", "10.97.0.0/24", "10.244.0.0/19", "10.244.32.0/21", "fd00:10:244:27::/64"}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(d.Ranges))
	if !slices.Equal(got, want) {
		t.Errorf("ranges %v, want %v", got, want)
	}
	notes := strings.Join(d.Notes, "; ")
	for _, w := range []string{"41 pod CIDRs from 40 nodes", "2 from 2 ServiceCIDR objects"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes %q do not say %q", notes, w)
		}
	}
}
