package xds

import (
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

// What a global service's TrafficPolicy adds to its client resources, in what
// proxyless gRPC (grpc-go) honours; docs/policy.md has the mapping.

// FaultFilter is the name of the HTTP fault filter in the client listener of a
// global service with a TrafficPolicy: empty (a no-op) there, the routes' faults set
// per route.
const FaultFilter = "envoy.filters.http.fault"

// Ring sizes of RingHash: grpc-go caps both at GRPC_RING_HASH_CAP (4096 by default)
// and refuses more than 8M.
const (
	ringMin = 1024
	ringMax = 4096
)

// defaultRetry is the retry of every route without retries of its own,
// policy.FailoverRetries: its codes in its order, its backoff grpc-go's default (left
// unset).
func defaultRetry() *routev3.RetryPolicy {
	r := policy.FailoverRetries()
	tokens := make([]string, 0, len(r.On))
	for _, c := range r.On {
		tokens = append(tokens, retryOn([]string{c}))
	}
	return &routev3.RetryPolicy{RetryOn: strings.Join(tokens, ","), NumRetries: wrapperspb.UInt32(uint32(r.Attempts))}
}

// faultFilter is the fault filter of a client listener with a TrafficPolicy: empty,
// a no-op unless a route overrides it.
func faultFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}}
}

// policyRoutes are the routes of a global service port under tp, in the policy's
// order, then the default route to every endpoint; live are the subsets of its splits
// with a healthy endpoint somewhere (liveSubsets).
func policyRoutes(hostname string, port uint32, tp *model.TrafficPolicy, live []string) []*routev3.Route {
	var out []*routev3.Route
	hash := hashPolicy(tp)
	for _, r := range tp.Routes {
		action := &routev3.RouteAction{HashPolicy: hash, RetryPolicy: defaultRetry()}
		if split := liveSplit(r.Split, live); len(split) > 0 {
			wc := &routev3.WeightedCluster{}
			for _, w := range split {
				wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
					Name: SubsetClusterName(hostname, port, w.Subset), Weight: wrapperspb.UInt32(uint32(w.Weight))})
			}
			action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
		} else {
			action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(hostname, port)}
		}
		if rt := r.Retries; rt != nil {
			action.RetryPolicy = &routev3.RetryPolicy{
				RetryOn:    retryOn(rt.On),
				NumRetries: wrapperspb.UInt32(uint32(rt.Attempts)),
				RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
					BaseInterval: durationpb.New(rt.BackoffBase.Duration), MaxInterval: durationpb.New(rt.BackoffMax.Duration)},
			}
		}
		if d := r.Timeout.Duration; d > 0 {
			// grpc-go ignores RouteAction.timeout; max_stream_duration bounds the call.
			action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(d)}
		}
		var perFilter map[string]*anypb.Any
		if r.Fault != nil {
			perFilter = map[string]*anypb.Any{FaultFilter: mustAny(httpFault(r.Fault))}
		}
		headers := headerMatchers(r.Headers)
		methods := r.Methods
		if len(methods) == 0 {
			methods = []string{""}
		}
		for _, m := range methods {
			out = append(out, &routev3.Route{
				Name:                 r.Name,
				Match:                matchOf(m, headers),
				Action:               &routev3.Route_Route{Route: action},
				TypedPerFilterConfig: perFilter,
			})
		}
	}
	return append(out, &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(hostname, port)},
			RetryPolicy:      defaultRetry(), HashPolicy: hash,
		}},
	})
}

// matchOf matches a method pattern: "/pkg.Svc/Method" exactly, "/pkg.Svc/*" by prefix
// (policy.MatchMethod), "" any method.
func matchOf(method string, headers []*routev3.HeaderMatcher) *routev3.RouteMatch {
	m := &routev3.RouteMatch{Headers: headers}
	switch svc, ok := strings.CutSuffix(method, "/*"); {
	case method == "":
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case ok:
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: svc + "/"}
	default:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: method}
	}
	return m
}

// headerMatchers are a route's header matches: gRPC metadata keys, lower case.
func headerMatchers(hs []model.HeaderMatch) []*routev3.HeaderMatcher {
	var out []*routev3.HeaderMatcher
	for _, h := range hs {
		m := &routev3.HeaderMatcher{Name: strings.ToLower(h.Name)}
		str := func(sm *matcherv3.StringMatcher) {
			m.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
		}
		switch {
		case h.Present != nil:
			// "absent" as an inverted presence: Envoy and grpc-go read it alike.
			m.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
			m.InvertMatch = !*h.Present
		case h.Exact != nil:
			str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: *h.Exact}})
		case h.Prefix != nil:
			str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: *h.Prefix}})
		case h.Regex != nil: // anchored by Envoy and grpc-go, as policy.Route matches
			str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: *h.Regex}}})
		}
		out = append(out, m)
	}
	return out
}

// retryOn is the retry_on of status code names (model.RetryableCodes): grpc-go's and
// Envoy's tokens.
func retryOn(codes []string) string {
	out := make([]string, 0, len(codes))
	for _, c := range codes {
		var b strings.Builder
		for i, r := range c {
			if i > 0 && r >= 'A' && r <= 'Z' {
				b.WriteByte('-')
			}
			b.WriteRune(r)
		}
		out = append(out, strings.ToLower(b.String()))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// grpcCode is the code of a status code name of model.GRPCCodes.
func grpcCode(name string) uint32 {
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(strings.ReplaceAll(c.String(), "Canceled", "Cancelled"), name) {
			return uint32(c)
		}
	}
	return uint32(codes.Unknown)
}

// httpFault is a route's fault, per million calls.
func httpFault(f *model.Fault) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil {
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.Duration.Duration)},
			Percentage:         perMillion(d.PerMillion),
		}
	}
	if a := f.Abort; a != nil {
		out.Abort = &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_GrpcStatus{GrpcStatus: grpcCode(a.Code)},
			Percentage: perMillion(a.PerMillion),
		}
	}
	return out
}

func perMillion(n int32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(n), Denominator: typev3.FractionalPercent_MILLION}
}

// hashPolicy hashes RingHash's header; nil for the other policies.
func hashPolicy(tp *model.TrafficPolicy) []*routev3.RouteAction_HashPolicy {
	if tp == nil || tp.LoadBalancer.Policy != model.LoadBalancerRingHash {
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{{Terminal: true, PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(tp.LoadBalancer.HashHeader)}}}}
}

// applyTraffic sets c's load balancing and outlier detection from tp. RoundRobin is
// what every cluster has (lb_policy ROUND_ROBIN: locality-weighted round robin).
func applyTraffic(c *clusterv3.Cluster, tp *model.TrafficPolicy) {
	if tp == nil {
		return
	}
	policy := func(name string, cfg *anypb.Any) *clusterv3.LoadBalancingPolicy {
		return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
			TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: name, TypedConfig: cfg}}}}
	}
	switch tp.LoadBalancer.Policy {
	case model.LoadBalancerLeastRequest:
		// Wrapped in wrr_locality: least_request alone ignores locality weights.
		c.LoadBalancingPolicy = policy("envoy.load_balancing_policies.wrr_locality", mustAny(&wrrlocalityv3.WrrLocality{
			EndpointPickingPolicy: policy("envoy.load_balancing_policies.least_request",
				mustAny(&leastrequestv3.LeastRequest{ChoiceCount: wrapperspb.UInt32(2)}))}))
	case model.LoadBalancerRingHash:
		c.LoadBalancingPolicy = policy("envoy.load_balancing_policies.ring_hash", mustAny(&ringhashv3.RingHash{
			HashFunction:    ringhashv3.RingHash_XX_HASH, // grpc-go refuses the default
			MinimumRingSize: wrapperspb.UInt64(ringMin), MaximumRingSize: wrapperspb.UInt64(ringMax)}))
	}
	if o := tp.OutlierDetection; o != nil {
		c.OutlierDetection = outlierDetection(o)
	}
}

// outlierDetection maps consecutiveErrors to what both proxies enforce: Envoy's
// consecutive_5xx, and for grpc-go (which ignores it) failure-percentage ejection of an
// endpoint that failed more than half of at least consecutiveErrors calls in an
// interval. Success-rate ejection, on in grpc-go unless set to 0, is off.
func outlierDetection(o *model.OutlierDetection) *clusterv3.OutlierDetection {
	maxEjection := 10 * o.BaseEjectionTime.Duration
	if maxEjection < 300*time.Second {
		maxEjection = 300 * time.Second
	}
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:                wrapperspb.UInt32(uint32(o.ConsecutiveErrors)),
		Interval:                       durationpb.New(o.Interval.Duration),
		BaseEjectionTime:               durationpb.New(o.BaseEjectionTime.Duration),
		MaxEjectionTime:                durationpb.New(maxEjection),
		MaxEjectionPercent:             wrapperspb.UInt32(uint32(o.MaxEjectionPercent)),
		EnforcingSuccessRate:           wrapperspb.UInt32(0),
		EnforcingFailurePercentage:     wrapperspb.UInt32(100),
		FailurePercentageThreshold:     wrapperspb.UInt32(50),
		FailurePercentageMinimumHosts:  wrapperspb.UInt32(1),
		FailurePercentageRequestVolume: wrapperspb.UInt32(uint32(o.ConsecutiveErrors)),
	}
}
