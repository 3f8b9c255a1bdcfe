package publish

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestExporters(t *testing.T) {
	const cluster = "east-1"
	svc := func(mods ...func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", Labels: map[string]string{"app": "cart", "tier": "web"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10"},
		}
		for _, m := range mods {
			m(s)
		}
		return s
	}
	ref := func(ns, name string, clusters ...string) model.GlobalService {
		return model.GlobalService{Namespace: "global", Name: "g-" + name, Service: &model.ServiceRef{Namespace: ns, Name: name}, Clusters: clusters}
	}
	sel := func(ns string, s *metav1.LabelSelector, clusters ...string) model.GlobalService {
		return model.GlobalService{Namespace: ns, Name: "by-selector", Selector: s, Clusters: clusters}
	}
	matchApp := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	both := []string{ExportedByGlobalService, ExportedByServiceExport}
	gs := []string{ExportedByGlobalService}
	se := []string{ExportedByServiceExport}

	tests := map[string]struct {
		svc     *corev1.Service
		globals []model.GlobalService
		export  bool
		want    []string
	}{
		"nothing selects it":                 {svc: svc(), want: nil},
		"reference":                          {svc: svc(), globals: []model.GlobalService{ref("shop", "cart")}, want: gs},
		"reference to another name":          {svc: svc(), globals: []model.GlobalService{ref("shop", "carts")}, want: nil},
		"reference to another namespace":     {svc: svc(), globals: []model.GlobalService{ref("shop2", "cart")}, want: nil},
		"reference across namespaces":        {svc: svc(), globals: []model.GlobalService{{Namespace: "other", Name: "x", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}}}, want: gs},
		"selector matches":                   {svc: svc(), globals: []model.GlobalService{sel("shop", matchApp("cart"))}, want: gs},
		"selector does not match":            {svc: svc(), globals: []model.GlobalService{sel("shop", matchApp("pay"))}, want: nil},
		"selector matches in other ns":       {svc: svc(), globals: []model.GlobalService{sel("other", matchApp("cart"))}, want: nil},
		"empty selector matches all in ns":   {svc: svc(), globals: []model.GlobalService{sel("shop", &metav1.LabelSelector{})}, want: gs},
		"selector on unlabelled service":     {svc: svc(func(s *corev1.Service) { s.Labels = nil }), globals: []model.GlobalService{sel("shop", matchApp("cart"))}, want: nil},
		"invalid selector matches nothing":   {svc: svc(), globals: []model.GlobalService{sel("shop", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}})}, want: nil},
		"expression selector":                {svc: svc(), globals: []model.GlobalService{sel("shop", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"web", "api"}}}})}, want: gs},
		"clusters include this one":          {svc: svc(), globals: []model.GlobalService{ref("shop", "cart", "west-1", cluster)}, want: gs},
		"clusters exclude this one":          {svc: svc(), globals: []model.GlobalService{ref("shop", "cart", "west-1")}, want: nil},
		"selector, clusters exclude":         {svc: svc(), globals: []model.GlobalService{sel("shop", matchApp("cart"), "west-1")}, want: nil},
		"excluded by one, selected by other": {svc: svc(), globals: []model.GlobalService{ref("shop", "cart", "west-1"), sel("shop", matchApp("cart"))}, want: gs},
		"service export only":                {svc: svc(), export: true, want: se},
		"global service and service export":  {svc: svc(), globals: []model.GlobalService{ref("shop", "cart")}, export: true, want: both},
		"two global services, one reason":    {svc: svc(), globals: []model.GlobalService{ref("shop", "cart"), sel("shop", matchApp("cart"))}, want: gs},
		"headless is exported": {
			svc:     svc(func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }),
			globals: []model.GlobalService{ref("shop", "cart")}, want: gs,
		},
		"selector-less is exported": {
			svc:    svc(func(s *corev1.Service) { s.Spec.Selector = nil }),
			export: true, want: se,
		},
		"ExternalName is never exported": {
			svc: svc(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeExternalName
				s.Spec.ExternalName = "db.example.com"
			}),
			globals: []model.GlobalService{ref("shop", "cart")}, export: true, want: nil,
		},
		"being deleted is not exported": {
			svc:     svc(func(s *corev1.Service) { s.DeletionTimestamp = &metav1.Time{} }),
			globals: []model.GlobalService{ref("shop", "cart")}, export: true, want: nil,
		},
		"nil service": {svc: nil, export: true, want: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Exporters(tc.svc, cluster, tc.globals, tc.export)
			if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("Exporters = %#v, want %#v", got, tc.want)
			}
		})
	}
}
