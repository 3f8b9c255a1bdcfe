package model

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The bounds of the TrafficPolicy and AuthorizationPolicy records: the CRDs' maxItems.
// Validate refuses records beyond them, so that a record the API server would refuse
// (written to the store by something other than the hub) costs a reader no more
// than a valid one.
const (
	MaxSubsets         = 16
	MaxSubsetClusters  = 64
	MaxSubsetLabels    = 8
	MaxRoutes          = 32
	MaxRouteMethods    = 16
	MaxRouteHeaders    = 8
	MaxSplit           = 16
	MaxRetryAttempts   = 10
	MaxAuthzRules      = 32
	MaxAuthzSources    = 16
	MaxAuthzMethods    = 16
	MaxSourceClusters  = 64
	MaxSourceNames     = 32
	maxHeaderValueSize = 256
)

// Load balancer policies of TrafficPolicy.LoadBalancer.Policy (v1alpha1.LoadBalancerPolicy).
const (
	LoadBalancerRoundRobin   = "RoundRobin"
	LoadBalancerLeastRequest = "LeastRequest"
	LoadBalancerRingHash     = "RingHash"
)

// Actions of AuthorizationPolicy (v1alpha1.AuthorizationAction).
const (
	ActionAllow = "Allow"
	ActionDeny  = "Deny"
)

// GRPCCodes are the gRPC status code names a fault may abort with
// (v1alpha1.GRPCCode); RetryableCodes those a route may retry (v1alpha1.RetryOn).
var (
	GRPCCodes = []string{"Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
		"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
		"Unavailable", "DataLoss", "Unauthenticated"}
	RetryableCodes = []string{"Unavailable", "Cancelled", "DeadlineExceeded", "ResourceExhausted", "Internal"}
)

// methodPattern is v1alpha1.MethodPattern's pattern.
var methodPattern = regexp.MustCompile(`^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/([A-Za-z_][A-Za-z0-9_]*|\*)$`)

// headerName is v1alpha1.HeaderName's pattern.
var headerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)

// TrafficPolicy is the hub's record of a TrafficPolicy (keyspace.TrafficPolicy), with
// defaults resolved.
type TrafficPolicy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Generation is the object's metadata.generation: agents report per generation
	// whether their proxies took it (Programmed).
	Generation int64 `json:"generation,omitempty"`
	// GlobalService names the GlobalService in Namespace the policy applies to.
	GlobalService    string            `json:"globalService"`
	LoadBalancer     LoadBalancer      `json:"loadBalancer"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// Subsets partition the service's endpoints: an endpoint is in the first subset
	// it matches (SubsetOf in package policy), else in the unnamed subset "".
	Subsets []Subset `json:"subsets,omitempty"`
	// Routes are matched in order.
	Routes []Route `json:"routes,omitempty"`
}

// LoadBalancer is how a client picks an endpoint.
type LoadBalancer struct {
	// Policy is LoadBalancerRoundRobin, LoadBalancerLeastRequest or LoadBalancerRingHash.
	Policy string `json:"policy"`
	// HashHeader is the metadata key RingHash hashes; set exactly for RingHash.
	HashHeader string `json:"hashHeader,omitempty"`
}

// OutlierDetection ejects endpoints that fail calls in a row.
type OutlierDetection struct {
	ConsecutiveErrors  int32           `json:"consecutiveErrors"`
	Interval           metav1.Duration `json:"interval"`
	BaseEjectionTime   metav1.Duration `json:"baseEjectionTime"`
	MaxEjectionPercent int32           `json:"maxEjectionPercent"`
}

// Subset is a named group of endpoints: those in one of Clusters (if any) carrying
// every label of Labels (if any).
type Subset struct {
	Name     string            `json:"name"`
	Clusters []string          `json:"clusters,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Route is what applies to the calls its match selects.
type Route struct {
	Name string `json:"name"`
	// Methods match "/pkg.Service/Method" exactly or "/pkg.Service/*" by service;
	// empty: any method.
	Methods []string `json:"methods,omitempty"`
	// Headers must all match.
	Headers []HeaderMatch `json:"headers,omitempty"`
	// Timeout bounds the call, retries included; 0: none.
	Timeout metav1.Duration `json:"timeout,omitzero"`
	Retries *Retries        `json:"retries,omitempty"`
	Fault   *Fault          `json:"fault,omitempty"`
	// Split sends the route's calls to subsets by weight (summing to 100); empty:
	// every endpoint.
	Split []WeightedSubset `json:"split,omitempty"`
}

// HeaderMatch matches one metadata key in exactly one way: Exact, Prefix, Regex
// (RE2, matching the whole value) or Present (true: the key is there; false: it is not).
type HeaderMatch struct {
	Name    string  `json:"name"`
	Exact   *string `json:"exact,omitempty"`
	Prefix  *string `json:"prefix,omitempty"`
	Regex   *string `json:"regex,omitempty"`
	Present *bool   `json:"present,omitempty"`
}

// Retries retries failed calls: Attempts retries after the first try, on the status
// codes On (names of RetryableCodes), with exponential backoff from BackoffBase to
// BackoffMax.
type Retries struct {
	Attempts    int32           `json:"attempts"`
	On          []string        `json:"on"`
	BackoffBase metav1.Duration `json:"backoffBase"`
	BackoffMax  metav1.Duration `json:"backoffMax"`
}

// Fault delays or aborts a share of calls.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays PerMillion of every million calls by Duration.
type FaultDelay struct {
	PerMillion int32           `json:"perMillion"`
	Duration   metav1.Duration `json:"duration"`
}

// FaultAbort fails PerMillion of every million calls with the gRPC status Code (a
// name of GRPCCodes).
type FaultAbort struct {
	PerMillion int32  `json:"perMillion"`
	Code       string `json:"code"`
}

// WeightedSubset is a subset ("" for the endpoints in no subset) and its percentage.
type WeightedSubset struct {
	Subset string `json:"subset"`
	Weight int32  `json:"weight"`
}

// AuthorizationPolicy is the hub's record of an AuthorizationPolicy
// (keyspace.AuthorizationPolicy).
type AuthorizationPolicy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Generation is the object's metadata.generation (see TrafficPolicy.Generation).
	Generation int64 `json:"generation,omitempty"`
	// GlobalService names the GlobalService in Namespace the policy applies to; "":
	// every global service of Namespace.
	GlobalService string `json:"globalService,omitempty"`
	// Action is ActionAllow or ActionDeny: what happens to calls a rule matches; set
	// when Rules is not empty.
	Action string              `json:"action,omitempty"`
	Rules  []AuthorizationRule `json:"rules,omitempty"`
	// DefaultAction is the namespace's default posture (ActionAllow or ActionDeny),
	// only on a namespace-wide policy; "": this policy says nothing of it.
	DefaultAction string `json:"defaultAction,omitempty"`
}

// AuthorizationRule matches calls from any of From (empty: anyone) to any of Methods
// (empty: any method; patterns as Route.Methods).
type AuthorizationRule struct {
	From    []AuthorizationSource `json:"from,omitempty"`
	Methods []string              `json:"methods,omitempty"`
}

// AuthorizationSource matches callers: every non-empty field must hold the caller's
// cluster, namespace, service account. ServiceAccounts is set only with Namespaces.
type AuthorizationSource struct {
	Clusters        []string `json:"clusters,omitempty"`
	Namespaces      []string `json:"namespaces,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// Validate implements Record: it refuses what the TrafficPolicy CRD refuses.
func (p *TrafficPolicy) Validate() error {
	if p.Namespace == "" || p.Name == "" {
		return invalid("traffic policy without namespace or name")
	}
	at := func(format string, args ...any) error {
		return invalid("traffic policy %s/%s: %s", p.Namespace, p.Name, fmt.Sprintf(format, args...))
	}
	if errs := validation.IsDNS1035Label(p.GlobalService); len(errs) > 0 {
		return at("globalService %q: %s", p.GlobalService, errs[0])
	}
	switch p.LoadBalancer.Policy {
	case LoadBalancerRoundRobin, LoadBalancerLeastRequest:
		if p.LoadBalancer.HashHeader != "" {
			return at("loadBalancer: a hash header is only for %s", LoadBalancerRingHash)
		}
	case LoadBalancerRingHash:
		if err := checkHeaderName(p.LoadBalancer.HashHeader); err != nil {
			return at("loadBalancer hash header: %v", err)
		}
	default:
		return at("unknown load balancer policy %q", p.LoadBalancer.Policy)
	}
	if o := p.OutlierDetection; o != nil {
		if o.ConsecutiveErrors < 1 || o.Interval.Duration <= 0 || o.BaseEjectionTime.Duration <= 0 ||
			o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
			return at("outlier detection needs consecutiveErrors ≥ 1, positive interval and base ejection time, maxEjectionPercent 0-100")
		}
	}
	if len(p.Subsets) > MaxSubsets || len(p.Routes) > MaxRoutes {
		return at("at most %d subsets and %d routes", MaxSubsets, MaxRoutes)
	}
	subsets := map[string]bool{}
	for _, s := range p.Subsets {
		if err := checkLabel("subset name", s.Name); err != nil {
			return at("%v", err)
		}
		if subsets[s.Name] {
			return at("subset %q repeated", s.Name)
		}
		subsets[s.Name] = true
		if len(s.Clusters) == 0 && len(s.Labels) == 0 {
			return at("subset %q selects no cluster and no label", s.Name)
		}
		if len(s.Clusters) > MaxSubsetClusters || len(s.Labels) > MaxSubsetLabels {
			return at("subset %q: at most %d clusters and %d labels", s.Name, MaxSubsetClusters, MaxSubsetLabels)
		}
	}
	routes := map[string]bool{}
	for _, r := range p.Routes {
		if err := checkLabel("route name", r.Name); err != nil {
			return at("%v", err)
		}
		if routes[r.Name] {
			return at("route %q repeated", r.Name)
		}
		routes[r.Name] = true
		if err := r.validate(subsets); err != nil {
			return at("route %q: %v", r.Name, err)
		}
	}
	return nil
}

func (r *Route) validate(subsets map[string]bool) error {
	if len(r.Methods) > MaxRouteMethods || len(r.Headers) > MaxRouteHeaders || len(r.Split) > MaxSplit {
		return fmt.Errorf("at most %d methods, %d headers and %d split entries", MaxRouteMethods, MaxRouteHeaders, MaxSplit)
	}
	if err := checkMethods(r.Methods); err != nil {
		return err
	}
	for _, h := range r.Headers {
		if err := h.validate(); err != nil {
			return err
		}
	}
	if r.Timeout.Duration < 0 {
		return fmt.Errorf("negative timeout")
	}
	if rt := r.Retries; rt != nil {
		if rt.Attempts < 1 || rt.Attempts > MaxRetryAttempts {
			return fmt.Errorf("retry attempts %d out of range 1-%d", rt.Attempts, MaxRetryAttempts)
		}
		if len(rt.On) == 0 {
			return fmt.Errorf("retries on no status code")
		}
		for _, c := range rt.On {
			if !slices.Contains(RetryableCodes, c) {
				return fmt.Errorf("retry on %q: not one of %s", c, strings.Join(RetryableCodes, ", "))
			}
		}
		if rt.BackoffBase.Duration <= 0 || rt.BackoffMax.Duration < rt.BackoffBase.Duration {
			return fmt.Errorf("retry backoff needs 0 < base ≤ max")
		}
	}
	if f := r.Fault; f != nil {
		if f.Delay == nil && f.Abort == nil {
			return fmt.Errorf("a fault without delay or abort")
		}
		if d := f.Delay; d != nil && (!perMillion(d.PerMillion) || d.Duration.Duration <= 0) {
			return fmt.Errorf("fault delay needs perMillion 0-1000000 and a positive duration")
		}
		if a := f.Abort; a != nil && (!perMillion(a.PerMillion) || !slices.Contains(GRPCCodes, a.Code)) {
			return fmt.Errorf("fault abort needs perMillion 0-1000000 and a gRPC code name, not %q", a.Code)
		}
	}
	if len(r.Split) > 0 {
		var sum int32
		seen := map[string]bool{}
		for _, s := range r.Split {
			if s.Subset != "" && !subsets[s.Subset] {
				return fmt.Errorf("split names subset %q, which the policy does not define", s.Subset)
			}
			if seen[s.Subset] {
				return fmt.Errorf("split names subset %q twice", s.Subset)
			}
			seen[s.Subset] = true
			if s.Weight < 0 || s.Weight > 100 {
				return fmt.Errorf("split weight %d out of range 0-100", s.Weight)
			}
			sum += s.Weight
		}
		if sum != 100 {
			return fmt.Errorf("split weights sum to %d, not 100", sum)
		}
	}
	return nil
}

func (h *HeaderMatch) validate() error {
	if err := checkHeaderName(h.Name); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{h.Exact != nil, h.Prefix != nil, h.Regex != nil, h.Present != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("header %q: exactly one of exact, prefix, regex and present", h.Name)
	}
	for _, v := range []*string{h.Exact, h.Prefix, h.Regex} {
		if v != nil && len(*v) > maxHeaderValueSize {
			return fmt.Errorf("header %q: value longer than %d bytes", h.Name, maxHeaderValueSize)
		}
	}
	if h.Regex != nil {
		if _, err := regexp.Compile(*h.Regex); err != nil {
			return fmt.Errorf("header %q: regex: %v", h.Name, err)
		}
	}
	return nil
}

// Validate implements Record: it refuses what the AuthorizationPolicy CRD refuses.
func (p *AuthorizationPolicy) Validate() error {
	if p.Namespace == "" || p.Name == "" {
		return invalid("authorization policy without namespace or name")
	}
	at := func(format string, args ...any) error {
		return invalid("authorization policy %s/%s: %s", p.Namespace, p.Name, fmt.Sprintf(format, args...))
	}
	if p.GlobalService != "" {
		if errs := validation.IsDNS1035Label(p.GlobalService); len(errs) > 0 {
			return at("globalService %q: %s", p.GlobalService, errs[0])
		}
		if p.DefaultAction != "" {
			return at("defaultAction on a policy of one global service")
		}
	}
	if p.DefaultAction != "" && p.DefaultAction != ActionAllow && p.DefaultAction != ActionDeny {
		return at("unknown defaultAction %q", p.DefaultAction)
	}
	if len(p.Rules) == 0 && p.DefaultAction == "" {
		return at("neither rules nor defaultAction")
	}
	if len(p.Rules) > 0 && p.Action != ActionAllow && p.Action != ActionDeny {
		return at("rules with action %q: want %s or %s", p.Action, ActionAllow, ActionDeny)
	}
	if len(p.Rules) > MaxAuthzRules {
		return at("at most %d rules", MaxAuthzRules)
	}
	for i, r := range p.Rules {
		if len(r.From) > MaxAuthzSources || len(r.Methods) > MaxAuthzMethods {
			return at("rules[%d]: at most %d sources and %d methods", i, MaxAuthzSources, MaxAuthzMethods)
		}
		if err := checkMethods(r.Methods); err != nil {
			return at("rules[%d]: %v", i, err)
		}
		for j, s := range r.From {
			if err := s.validate(); err != nil {
				return at("rules[%d].from[%d]: %v", i, j, err)
			}
		}
	}
	return nil
}

func (s *AuthorizationSource) validate() error {
	if len(s.Clusters) == 0 && len(s.Namespaces) == 0 {
		return fmt.Errorf("neither clusters nor namespaces")
	}
	if len(s.ServiceAccounts) > 0 && len(s.Namespaces) == 0 {
		return fmt.Errorf("serviceAccounts without namespaces")
	}
	if len(s.Clusters) > MaxSourceClusters || len(s.Namespaces) > MaxSourceNames || len(s.ServiceAccounts) > MaxSourceNames {
		return fmt.Errorf("at most %d clusters, %d namespaces and %d service accounts", MaxSourceClusters, MaxSourceNames, MaxSourceNames)
	}
	for _, c := range s.Clusters {
		if err := checkLabel("cluster", c); err != nil {
			return err
		}
	}
	for _, ns := range s.Namespaces {
		if err := checkLabel("namespace", ns); err != nil {
			return err
		}
	}
	for _, sa := range s.ServiceAccounts {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return fmt.Errorf("service account %q: %s", sa, errs[0])
		}
	}
	return nil
}

func checkMethods(methods []string) error {
	for _, m := range methods {
		if !methodPattern.MatchString(m) {
			return fmt.Errorf("method %q: want /<package>.<Service>/<Method> or /<package>.<Service>/*", m)
		}
	}
	return nil
}

func checkHeaderName(name string) error {
	if len(name) > 128 || !headerName.MatchString(name) || strings.HasSuffix(name, "-bin") || strings.HasPrefix(name, "grpc-") {
		return fmt.Errorf("header name %q: want a lower-case metadata key, not binary (-bin) nor reserved (grpc-)", name)
	}
	return nil
}

func perMillion(n int32) bool { return n >= 0 && n <= 1_000_000 }
