package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LoadBalancerPolicy is how a client picks one endpoint among those of a priority.
// +kubebuilder:validation:Enum=RoundRobin;LeastRequest;RingHash
type LoadBalancerPolicy string

// Load balancer policies.
const (
	// LoadBalancerRoundRobin: each endpoint in turn.
	LoadBalancerRoundRobin LoadBalancerPolicy = "RoundRobin"
	// LoadBalancerLeastRequest: the endpoint with the fewest calls in flight, of two
	// picked at random.
	LoadBalancerLeastRequest LoadBalancerPolicy = "LeastRequest"
	// LoadBalancerRingHash: calls with the same hash key go to the same endpoint
	// while it lives (sticky sessions); when it goes, only its keys move.
	LoadBalancerRingHash LoadBalancerPolicy = "RingHash"
)

// GRPCCode is the name of a gRPC status code, as in google.golang.org/grpc/codes.
// +kubebuilder:validation:Enum=Cancelled;Unknown;InvalidArgument;DeadlineExceeded;NotFound;AlreadyExists;PermissionDenied;ResourceExhausted;FailedPrecondition;Aborted;OutOfRange;Unimplemented;Internal;Unavailable;DataLoss;Unauthenticated
type GRPCCode string

// RetryOn is a gRPC status code a route retries.
// +kubebuilder:validation:Enum=Unavailable;Cancelled;DeadlineExceeded;ResourceExhausted;Internal
type RetryOn string

// Retryable status codes.
const (
	RetryOnUnavailable       RetryOn = "Unavailable"
	RetryOnCancelled         RetryOn = "Cancelled"
	RetryOnDeadlineExceeded  RetryOn = "DeadlineExceeded"
	RetryOnResourceExhausted RetryOn = "ResourceExhausted"
	RetryOnInternal          RetryOn = "Internal"
)

// TrafficPolicySpec says how clients call one global service: load balancing, outlier
// detection, and per route (gRPC method and headers) timeouts, retries, fault
// injection and weighted splits across subsets of its endpoints.
// +kubebuilder:validation:XValidation:rule="!has(self.routes) || self.routes.all(r, !has(r.split) || r.split.all(s, size(s.subset) == 0 || (has(self.subsets) && self.subsets.exists(x, x.name == s.subset))))",message="every routes[].split[].subset must name one of spec.subsets (or be \"\" for the endpoints in no subset)",fieldPath=".routes"
type TrafficPolicySpec struct {
	// GlobalService names the GlobalService in the same namespace this policy applies to.
	GlobalService GlobalServiceName `json:"globalService"`

	// LoadBalancer says how a client picks an endpoint.
	// +kubebuilder:default={}
	// +optional
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`

	// OutlierDetection ejects endpoints that fail calls in a row for a while, on top
	// of meshfed's own health (endpoint readiness and cluster heartbeats). Absent: none.
	// +optional
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`

	// Subsets name groups of the service's endpoints, by cluster and by endpoint
	// label, for routes to split traffic across. An endpoint belongs to the first
	// subset (in this order) it matches; endpoints that match none form the unnamed
	// subset "".
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(s, self.exists_one(t, t.name == s.name))",message="subset names must be unique"
	// +listType=atomic
	// +optional
	Subsets []Subset `json:"subsets,omitempty"`

	// Routes are matched in order; the first whose match a call satisfies applies.
	// Calls no route matches get the service's defaults: no timeout, meshfed's
	// failover retry (2 retries of UNAVAILABLE and CANCELLED), no fault, every endpoint.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.exists_one(t, t.name == r.name))",message="route names must be unique"
	// +listType=atomic
	// +optional
	Routes []TrafficRoute `json:"routes,omitempty"`
}

// LoadBalancer says how a client picks an endpoint.
// +kubebuilder:validation:XValidation:rule="has(self.hashKey) == (has(self.policy) && self.policy == 'RingHash')",message="set hashKey exactly when policy is RingHash: it says which request header keeps calls on one endpoint"
type LoadBalancer struct {
	// Policy is RoundRobin, LeastRequest or RingHash.
	// +kubebuilder:default=RoundRobin
	// +optional
	Policy LoadBalancerPolicy `json:"policy,omitempty"`

	// HashKey is what RingHash hashes: calls with equal keys go to one endpoint.
	// +optional
	HashKey *HashKey `json:"hashKey,omitempty"`
}

// HeaderName is a gRPC metadata key: lower case, not a pseudo-header, not binary
// ("-bin").
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=128
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
// +kubebuilder:validation:XValidation:rule="!self.endsWith('-bin') && !self.startsWith('grpc-')",message="header names ending in -bin (binary metadata) or starting with grpc- (reserved by gRPC) cannot be matched or hashed"
type HeaderName string

// HashKey names the request header a RingHash load balancer hashes.
type HashKey struct {
	// Header is the metadata key whose value is hashed, e.g. x-session-id. Calls
	// without it hash to a random endpoint.
	Header HeaderName `json:"header"`
}

// OutlierDetection ejects endpoints that fail calls in a row.
type OutlierDetection struct {
	// ConsecutiveErrors is how many failed calls in a row eject an endpoint.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	ConsecutiveErrors *int32 `json:"consecutiveErrors,omitempty"`

	// Interval is how often endpoints are judged.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1h')",message="interval must be between 100ms and 1h"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// BaseEjectionTime is how long an endpoint is ejected the first time; each
	// further ejection lasts this times the number of ejections.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="baseEjectionTime must be between 1s and 1h"
	// +optional
	BaseEjectionTime *metav1.Duration `json:"baseEjectionTime,omitempty"`

	// MaxEjectionPercent is the largest share of the service's endpoints ejected at once.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// Subset is a named group of a service's endpoints: those in one of Clusters (if
// set) that carry every label of Labels (if set).
// +kubebuilder:validation:XValidation:rule="(has(self.clusters) && size(self.clusters) > 0) || (has(self.labels) && size(self.labels) > 0)",message="a subset needs clusters, labels or both: it selects the endpoints in those clusters that carry those labels"
type Subset struct {
	// Name is what routes' splits call the subset.
	Name SectionName `json:"name"`

	// Clusters selects the endpoints in these member clusters.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Clusters []ClusterName `json:"clusters,omitempty"`

	// Labels selects the endpoints whose Pod carries every one of these labels,
	// e.g. version: v2.
	// +kubebuilder:validation:MaxProperties=8
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// TrafficRoute is what applies to the calls one match selects.
type TrafficRoute struct {
	// Name identifies the route in status, explanations and metrics.
	Name SectionName `json:"name"`

	// Match selects calls; empty selects every call.
	// +optional
	Match RouteMatch `json:"match,omitempty"`

	// Timeout is how long a call may take, retries included, before it fails with
	// DEADLINE_EXCEEDED. Absent: no timeout but the client's own deadline.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="timeout must be between 1ms and 1h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retries retries calls that fail with the listed status codes.
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`

	// Fault injects delays and aborts into a share of the calls, to test how
	// clients cope. Never on in production by accident: it is per route.
	// +optional
	Fault *FaultInjection `json:"fault,omitempty"`

	// Split sends the route's calls to subsets by weight (percent, summing to 100).
	// Each subset fails over between localities like the whole service does, so a
	// 5% canary stays 5% of the calls. Absent: every endpoint, as without a policy.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.map(s, s.weight).sum() == 100",message="split weights must sum to 100"
	// +kubebuilder:validation:XValidation:rule="self.all(s, self.exists_one(t, t.subset == s.subset))",message="a split must not name a subset twice"
	// +listType=atomic
	// +optional
	Split []WeightedSubset `json:"split,omitempty"`
}

// RouteMatch selects calls: by method (any of Methods) and by headers (all of Headers).
type RouteMatch struct {
	// Methods are "/<package>.<Service>/<Method>" or "/<package>.<Service>/*".
	// Empty: any method.
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	Methods []MethodPattern `json:"methods,omitempty"`

	// Headers must all match.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// HeaderMatch matches one request header (gRPC metadata key) in exactly one way.
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex), has(self.present)].filter(x, x).size() == 1",message="set exactly one of exact, prefix, regex and present"
type HeaderMatch struct {
	// Name is the metadata key.
	Name HeaderName `json:"name"`
	// Exact matches a value equal to this.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Exact *string `json:"exact,omitempty"`
	// Prefix matches a value starting with this.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Prefix *string `json:"prefix,omitempty"`
	// Regex matches a value the RE2 regular expression matches in full.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Regex *string `json:"regex,omitempty"`
	// Present: true matches calls that carry the header, false calls that do not.
	// +optional
	Present *bool `json:"present,omitempty"`
}

// RetryPolicy retries failed calls.
type RetryPolicy struct {
	// Attempts is how many times a failed call is retried after the first try.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts"`

	// On are the status codes that are retried.
	// +kubebuilder:default={Unavailable}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	// +listType=set
	// +optional
	On []RetryOn `json:"on,omitempty"`

	// Backoff spaces the retries.
	// +optional
	Backoff *RetryBackoff `json:"backoff,omitempty"`
}

// RetryBackoff is exponential with jitter, from Base up to Max.
// +kubebuilder:validation:XValidation:rule="!has(self.base) || !has(self.max) || duration(self.max) >= duration(self.base)",message="backoff.max must be at least backoff.base"
type RetryBackoff struct {
	// Base is the first retry's backoff.
	// +kubebuilder:default="25ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1m')",message="backoff.base must be between 1ms and 1m"
	// +optional
	Base *metav1.Duration `json:"base,omitempty"`
	// Max caps the backoff. Absent: 10 times Base.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('10m')",message="backoff.max must be between 1ms and 10m"
	// +optional
	Max *metav1.Duration `json:"max,omitempty"`
}

// FaultInjection delays or aborts a share of calls.
// +kubebuilder:validation:XValidation:rule="has(self.delay) || has(self.abort)",message="a fault needs delay, abort or both"
type FaultInjection struct {
	// Delay delays a share of calls.
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// Abort fails a share of calls with a status code, without calling the server.
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a share of calls.
type FaultDelay struct {
	// Percent of calls delayed: an integer (10) or a decimal string with at most
	// four decimals ("0.5"), from 0 to 100.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 0 && self <= 100) : self.matches('^(100(\\\\.0{1,4})?|[0-9]{1,2}(\\\\.[0-9]{1,4})?)$')",message="percent must be from 0 to 100: an integer, or a decimal string with at most four decimals such as \"0.5\""
	Percent intstr.IntOrString `json:"percent"`
	// Duration is how long.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="delay.duration must be between 1ms and 1h"
	Duration metav1.Duration `json:"duration"`
}

// FaultAbort fails a share of calls.
type FaultAbort struct {
	// Percent of calls aborted, as FaultDelay.Percent.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 0 && self <= 100) : self.matches('^(100(\\\\.0{1,4})?|[0-9]{1,2}(\\\\.[0-9]{1,4})?)$')",message="percent must be from 0 to 100: an integer, or a decimal string with at most four decimals such as \"0.5\""
	Percent intstr.IntOrString `json:"percent"`
	// Code is the gRPC status the aborted calls fail with, e.g. Unavailable.
	Code GRPCCode `json:"code"`
}

// WeightedSubset is a subset and its share of a route's calls.
type WeightedSubset struct {
	// Subset names one of spec.subsets, or is "" for the endpoints in no subset.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	Subset string `json:"subset"`
	// Weight is the percentage of the route's calls.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// TrafficPolicy says how clients call one global service, on every cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=meshfed
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.globalService`
// +kubebuilder:printcolumn:name="LB",type=string,JSONPath=`.spec.loadBalancer.policy`
// +kubebuilder:printcolumn:name="Routes",type=string,JSONPath=`.spec.routes[*].name`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrafficPolicySpec `json:"spec"`
	Status PolicyStatus      `json:"status,omitempty"`
}

// TrafficPolicyList is a list of TrafficPolicies.
// +kubebuilder:object:root=true
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}
