package model

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

func validTraffic() *TrafficPolicy {
	return &TrafficPolicy{
		Namespace: "shop", Name: "cart", GlobalService: "cart",
		LoadBalancer:     LoadBalancer{Policy: LoadBalancerRingHash, HashHeader: "x-session"},
		OutlierDetection: &OutlierDetection{ConsecutiveErrors: 5, Interval: dur(10 * time.Second), BaseEjectionTime: dur(30 * time.Second), MaxEjectionPercent: 10},
		Subsets:          []Subset{{Name: "canary", Clusters: []string{"beta"}, Labels: map[string]string{"version": "v2"}}},
		Routes: []Route{
			{
				Name: "reads", Methods: []string{"/shop.Cart/Get"}, Headers: []HeaderMatch{{Name: "x-tenant", Regex: ptr.To("acme-.*")}},
				Timeout: dur(100 * time.Millisecond),
				Retries: &Retries{Attempts: 3, On: []string{"Unavailable"}, BackoffBase: dur(25 * time.Millisecond), BackoffMax: dur(250 * time.Millisecond)},
				Fault:   &Fault{Abort: &FaultAbort{PerMillion: 5000, Code: "Unavailable"}, Delay: &FaultDelay{PerMillion: 100000, Duration: dur(time.Second)}},
			},
			{Name: "all", Methods: []string{"/shop.Cart/*"}, Split: []WeightedSubset{{Subset: "", Weight: 95}, {Subset: "canary", Weight: 5}}},
		},
	}
}

func validAuthz() *AuthorizationPolicy {
	return &AuthorizationPolicy{
		Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: ActionAllow,
		Rules: []AuthorizationRule{{
			From:    []AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}},
			Methods: []string{"/shop.Cart/*"},
		}},
	}
}

func TestTrafficPolicyValidate(t *testing.T) {
	p := func(change func(*TrafficPolicy)) *TrafficPolicy {
		tp := validTraffic()
		change(tp)
		return tp
	}
	checkValidate(t, map[string]validateCase{
		"valid":                 {validTraffic(), true},
		"round robin":           {p(func(tp *TrafficPolicy) { tp.LoadBalancer = LoadBalancer{Policy: LoadBalancerRoundRobin} }), true},
		"no routes nor subsets": {p(func(tp *TrafficPolicy) { tp.Routes, tp.Subsets = nil, nil }), true},
		"no global service":     {p(func(tp *TrafficPolicy) { tp.GlobalService = "" }), false},
		"unknown lb":            {p(func(tp *TrafficPolicy) { tp.LoadBalancer.Policy = "Random" }), false},
		"ring hash without key": {p(func(tp *TrafficPolicy) { tp.LoadBalancer.HashHeader = "" }), false},
		"hash key without ring": {p(func(tp *TrafficPolicy) { tp.LoadBalancer.Policy = LoadBalancerLeastRequest }), false},
		"binary hash header":    {p(func(tp *TrafficPolicy) { tp.LoadBalancer.HashHeader = "x-bin" }), false},
		"outlier zero errors":   {p(func(tp *TrafficPolicy) { tp.OutlierDetection.ConsecutiveErrors = 0 }), false},
		"subset repeated":       {p(func(tp *TrafficPolicy) { tp.Subsets = append(tp.Subsets, tp.Subsets[0]) }), false},
		"subset of nothing":     {p(func(tp *TrafficPolicy) { tp.Subsets[0].Clusters, tp.Subsets[0].Labels = nil, nil }), false},
		"too many subsets": {p(func(tp *TrafficPolicy) {
			for i := range MaxSubsets {
				tp.Subsets = append(tp.Subsets, Subset{Name: "s" + strings.Repeat("x", i), Clusters: []string{"a"}})
			}
		}), false},
		"route repeated":        {p(func(tp *TrafficPolicy) { tp.Routes[1].Name = "reads" }), false},
		"method malformed":      {p(func(tp *TrafficPolicy) { tp.Routes[0].Methods = []string{"/shop.Cart/Get/x"} }), false},
		"header two ways":       {p(func(tp *TrafficPolicy) { tp.Routes[0].Headers[0].Exact = ptr.To("x") }), false},
		"header no way":         {p(func(tp *TrafficPolicy) { tp.Routes[0].Headers[0].Regex = nil }), false},
		"regex not RE2":         {p(func(tp *TrafficPolicy) { tp.Routes[0].Headers[0].Regex = ptr.To("(?<=a)b") }), false},
		"retries 0":             {p(func(tp *TrafficPolicy) { tp.Routes[0].Retries.Attempts = 0 }), false},
		"retries 11":            {p(func(tp *TrafficPolicy) { tp.Routes[0].Retries.Attempts = 11 }), false},
		"retry on NotFound":     {p(func(tp *TrafficPolicy) { tp.Routes[0].Retries.On = []string{"NotFound"} }), false},
		"backoff max < base":    {p(func(tp *TrafficPolicy) { tp.Routes[0].Retries.BackoffMax = dur(time.Millisecond) }), false},
		"abort over a million":  {p(func(tp *TrafficPolicy) { tp.Routes[0].Fault.Abort.PerMillion = 1_000_001 }), false},
		"abort unknown code":    {p(func(tp *TrafficPolicy) { tp.Routes[0].Fault.Abort.Code = "OK" }), false},
		"empty fault":           {p(func(tp *TrafficPolicy) { tp.Routes[0].Fault = &Fault{} }), false},
		"split 99":              {p(func(tp *TrafficPolicy) { tp.Routes[1].Split[0].Weight = 94 }), false},
		"split unknown subset":  {p(func(tp *TrafficPolicy) { tp.Routes[1].Split[1].Subset = "v3" }), false},
		"split subset twice":    {p(func(tp *TrafficPolicy) { tp.Routes[1].Split[0].Subset = "canary" }), false},
		"split negative weight": {p(func(tp *TrafficPolicy) { tp.Routes[1].Split = []WeightedSubset{{"", 101}, {"canary", -1}} }), false},
	})
}

func TestAuthorizationPolicyValidate(t *testing.T) {
	p := func(change func(*AuthorizationPolicy)) *AuthorizationPolicy {
		ap := validAuthz()
		change(ap)
		return ap
	}
	checkValidate(t, map[string]validateCase{
		"valid":                  {validAuthz(), true},
		"namespace default only": {&AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: ActionDeny}, true},
		"deny from a cluster": {p(func(ap *AuthorizationPolicy) {
			ap.Action, ap.Rules[0].From = ActionDeny, []AuthorizationSource{{Clusters: []string{"staging"}}}
		}), true},
		"rule from anyone":            {p(func(ap *AuthorizationPolicy) { ap.Rules[0].From = nil }), true},
		"default on a service policy": {p(func(ap *AuthorizationPolicy) { ap.DefaultAction = ActionDeny }), false},
		"unknown default":             {p(func(ap *AuthorizationPolicy) { ap.GlobalService, ap.DefaultAction = "", "Audit" }), false},
		"rules without action":        {p(func(ap *AuthorizationPolicy) { ap.Action = "" }), false},
		"nothing":                     {p(func(ap *AuthorizationPolicy) { ap.Rules = nil }), false},
		"empty source":                {p(func(ap *AuthorizationPolicy) { ap.Rules[0].From = []AuthorizationSource{{}} }), false},
		"service account without namespace": {p(func(ap *AuthorizationPolicy) {
			ap.Rules[0].From = []AuthorizationSource{{Clusters: []string{"a"}, ServiceAccounts: []string{"x"}}}
		}), false},
		"bad cluster": {p(func(ap *AuthorizationPolicy) { ap.Rules[0].From[0].Clusters = []string{"A_B"} }), false},
		"bad method":  {p(func(ap *AuthorizationPolicy) { ap.Rules[0].Methods = []string{"Get"} }), false},
		"bad service": {p(func(ap *AuthorizationPolicy) { ap.GlobalService = "9cart" }), false},
		"too many rules": {p(func(ap *AuthorizationPolicy) {
			for range MaxAuthzRules {
				ap.Rules = append(ap.Rules, ap.Rules[0])
			}
		}), false},
	})
}

// The JSON of the policy records is part of the keyspace API (TestEncodeGolden).
func TestPolicyRecordsGoldenAndRoundTrip(t *testing.T) {
	tests := map[string]struct {
		key  string
		rec  Record
		want string
	}{
		"traffic policy": {keyspace.TrafficPolicy("shop", "cart"), validTraffic(),
			`{"namespace":"shop","name":"cart","globalService":"cart","loadBalancer":{"policy":"RingHash","hashHeader":"x-session"},` +
				`"outlierDetection":{"consecutiveErrors":5,"interval":"10s","baseEjectionTime":"30s","maxEjectionPercent":10},` +
				`"subsets":[{"name":"canary","clusters":["beta"],"labels":{"version":"v2"}}],` +
				`"routes":[{"name":"reads","methods":["/shop.Cart/Get"],"headers":[{"name":"x-tenant","regex":"acme-.*"}],"timeout":"100ms",` +
				`"retries":{"attempts":3,"on":["Unavailable"],"backoffBase":"25ms","backoffMax":"250ms"},` +
				`"fault":{"delay":{"perMillion":100000,"duration":"1s"},"abort":{"perMillion":5000,"code":"Unavailable"}}},` +
				`{"name":"all","methods":["/shop.Cart/*"],"split":[{"subset":"","weight":95},{"subset":"canary","weight":5}]}]}`},
		"authorization policy": {keyspace.AuthorizationPolicy("shop", "frontend-only"), validAuthz(),
			`{"namespace":"shop","name":"frontend-only","globalService":"cart","action":"Allow",` +
				`"rules":[{"from":[{"namespaces":["shop"],"serviceAccounts":["frontend"]}],"methods":["/shop.Cart/*"]}]}`},
		"namespace posture": {keyspace.AuthorizationPolicy("shop", "posture"), &AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: ActionDeny},
			`{"namespace":"shop","name":"posture","defaultAction":"Deny"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(tc.rec)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(b) != tc.want {
				t.Fatalf("Encode =\n%s\nwant\n%s", b, tc.want)
			}
			got, err := Decode(tc.key, b)
			if err != nil {
				t.Fatalf("Decode(Encode(rec)): %v", err)
			}
			if diff := cmp.Diff(tc.rec, got); diff != "" {
				t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
			}
			// At another name's key, the record disagrees with its key.
			if _, err := Decode(keyspace.TrafficPolicy("shop", "other"), b); err == nil {
				t.Fatal("Decode accepted a record at another object's key")
			}
		})
	}
	// A forged record the API server would refuse is refused by every reader.
	forged := `{"namespace":"shop","name":"cart","globalService":"cart","loadBalancer":{"policy":"RoundRobin"},` +
		`"routes":[{"name":"r","split":[{"subset":"nowhere","weight":100}]}]}`
	if _, err := Decode(keyspace.TrafficPolicy("shop", "cart"), []byte(forged)); err == nil || !strings.Contains(err.Error(), `subset "nowhere"`) {
		t.Fatalf("Decode of a split to an undefined subset: %v, want an error naming it", err)
	}
}
