package controllers

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// trafficPolicy is the etcd record of a TrafficPolicy, with the API server's defaults
// resolved again here (v1alpha1's constants) so that an object written before a
// default existed still converts. The error says which field the record cannot hold
// (a percentage the schema should have refused).
func trafficPolicy(tp *v1.TrafficPolicy) (*model.TrafficPolicy, error) {
	s := tp.Spec
	rec := &model.TrafficPolicy{
		Namespace:     tp.Namespace,
		Name:          tp.Name,
		Generation:    tp.Generation,
		GlobalService: string(s.GlobalService),
		LoadBalancer:  model.LoadBalancer{Policy: string(s.LoadBalancer.Policy)},
	}
	if rec.LoadBalancer.Policy == "" {
		rec.LoadBalancer.Policy = string(v1.DefaultLoadBalancerPolicy)
	}
	if s.LoadBalancer.HashKey != nil {
		rec.LoadBalancer.HashHeader = string(s.LoadBalancer.HashKey.Header)
	}
	if o := s.OutlierDetection; o != nil {
		rec.OutlierDetection = &model.OutlierDetection{
			ConsecutiveErrors:  ptr.Deref(o.ConsecutiveErrors, v1.DefaultOutlierConsecutiveErrors),
			Interval:           ptr.Deref(o.Interval, metav1.Duration{Duration: v1.DefaultOutlierInterval}),
			BaseEjectionTime:   ptr.Deref(o.BaseEjectionTime, metav1.Duration{Duration: v1.DefaultOutlierBaseEjectionTime}),
			MaxEjectionPercent: ptr.Deref(o.MaxEjectionPercent, v1.DefaultOutlierMaxEjectionPercent),
		}
	}
	for _, sub := range s.Subsets {
		m := model.Subset{Name: string(sub.Name), Labels: sub.Labels}
		for _, c := range sub.Clusters {
			m.Clusters = append(m.Clusters, string(c))
		}
		rec.Subsets = append(rec.Subsets, m)
	}
	for i, r := range s.Routes {
		route, err := trafficRoute(r)
		if err != nil {
			return nil, fmt.Errorf("spec.routes[%d].%w", i, err)
		}
		rec.Routes = append(rec.Routes, route)
	}
	return rec, nil
}

func trafficRoute(r v1.TrafficRoute) (model.Route, error) {
	route := model.Route{Name: string(r.Name), Timeout: ptr.Deref(r.Timeout, metav1.Duration{})}
	for _, m := range r.Match.Methods {
		route.Methods = append(route.Methods, string(m))
	}
	for _, h := range r.Match.Headers {
		route.Headers = append(route.Headers, model.HeaderMatch{Name: string(h.Name), Exact: h.Exact, Prefix: h.Prefix, Regex: h.Regex, Present: h.Present})
	}
	if rt := r.Retries; rt != nil {
		retries := &model.Retries{Attempts: rt.Attempts, BackoffBase: metav1.Duration{Duration: v1.DefaultRetryBackoffBase}}
		for _, on := range rt.On {
			retries.On = append(retries.On, string(on))
		}
		if len(retries.On) == 0 {
			retries.On = []string{string(v1.DefaultRetryOn)}
		}
		if b := rt.Backoff; b != nil && b.Base != nil {
			retries.BackoffBase = *b.Base
		}
		retries.BackoffMax = metav1.Duration{Duration: v1.RetryBackoffMaxFactor * retries.BackoffBase.Duration}
		if b := rt.Backoff; b != nil && b.Max != nil {
			retries.BackoffMax = *b.Max
		}
		route.Retries = retries
	}
	if f := r.Fault; f != nil {
		route.Fault = &model.Fault{}
		if d := f.Delay; d != nil {
			n, err := perMillion(d.Percent)
			if err != nil {
				return route, fmt.Errorf("fault.delay.percent: %w", err)
			}
			route.Fault.Delay = &model.FaultDelay{PerMillion: n, Duration: d.Duration}
		}
		if a := f.Abort; a != nil {
			n, err := perMillion(a.Percent)
			if err != nil {
				return route, fmt.Errorf("fault.abort.percent: %w", err)
			}
			route.Fault.Abort = &model.FaultAbort{PerMillion: n, Code: string(a.Code)}
		}
	}
	for _, w := range r.Split {
		route.Split = append(route.Split, model.WeightedSubset{Subset: w.Subset, Weight: w.Weight})
	}
	return route, nil
}

// perMillion converts a fault percentage (an integer, or a decimal string of at most
// four decimals) to calls per million.
func perMillion(p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 0 || p.IntVal > 100 {
			return 0, fmt.Errorf("%d is not a percentage", p.IntVal)
		}
		return p.IntVal * 10_000, nil
	}
	whole, frac, _ := strings.Cut(p.StrVal, ".")
	if len(frac) > 4 {
		return 0, fmt.Errorf("%q has more than four decimals", p.StrVal)
	}
	w, err := strconv.ParseInt(whole, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal percentage", p.StrVal)
	}
	var f int64
	if frac != "" {
		if f, err = strconv.ParseInt(frac+strings.Repeat("0", 4-len(frac)), 10, 32); err != nil || frac[0] == '-' || frac[0] == '+' {
			return 0, fmt.Errorf("%q is not a decimal percentage", p.StrVal)
		}
	}
	n := w*10_000 + f
	if w < 0 || n > 1_000_000 {
		return 0, fmt.Errorf("%q is not between 0 and 100", p.StrVal)
	}
	return int32(n), nil
}

// authorizationPolicy is the etcd record of an AuthorizationPolicy.
func authorizationPolicy(ap *v1.AuthorizationPolicy) *model.AuthorizationPolicy {
	s := ap.Spec
	rec := &model.AuthorizationPolicy{
		Namespace:     ap.Namespace,
		Name:          ap.Name,
		Generation:    ap.Generation,
		GlobalService: string(s.GlobalService),
		Action:        string(s.Action),
		DefaultAction: string(s.DefaultAction),
	}
	for _, r := range s.Rules {
		rule := model.AuthorizationRule{}
		for _, m := range r.Methods {
			rule.Methods = append(rule.Methods, string(m))
		}
		for _, f := range r.From {
			src := model.AuthorizationSource{Namespaces: f.Namespaces, ServiceAccounts: f.ServiceAccounts}
			for _, c := range f.Clusters {
				src.Clusters = append(src.Clusters, string(c))
			}
			rule.From = append(rule.From, src)
		}
		rec.Rules = append(rec.Rules, rule)
	}
	return rec
}
