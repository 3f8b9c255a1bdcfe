package v1alpha1

import "time"

// The defaults of meshfed's API, each in one place: the CRDs say them in kubebuilder
// default markers (the API server fills them in), and code that must resolve a default
// itself (a record written before a default existed, a service with no policy, a
// command-line flag) reads these constants. TestDefaultsMatchCRDs keeps the markers
// and the constants equal.
const (
	// DefaultLocalityPreference is FailoverPolicySpec.LocalityPreference's default.
	DefaultLocalityPreference = PreferZone
	// DefaultFallbackToAny is FailoverPolicySpec.FallbackToAny's default.
	DefaultFallbackToAny = true
	// DefaultMinHealthyPercent is FailoverPolicySpec.MinHealthyPercent's default.
	DefaultMinHealthyPercent = 70
	// DefaultFailbackHold is FailoverPolicySpec.FailbackHold's default.
	DefaultFailbackHold = 30 * time.Second
	// DefaultDemoteAfter is StaleClusterPolicy.DemoteAfter's default.
	DefaultDemoteAfter = 30 * time.Second
	// DefaultDropAfter is StaleClusterPolicy.DropAfter's default.
	DefaultDropAfter = 10 * time.Minute
	// DefaultGatewayPort is GatewayAddress.Port's default: where east-west gateways
	// listen (Istio's convention).
	DefaultGatewayPort = 15443
	// DefaultNetwork is MeshClusterSpec.Network's default: the network of a cluster
	// that names none. Clusters on the same network reach each other's endpoints
	// directly; others go through east-west gateways.
	DefaultNetwork = "default"

	// DefaultMaxServices is PublishLimits.MaxServices's default: how many services
	// one member cluster may publish.
	DefaultMaxServices = 2000
	// DefaultMaxEndpointsPerService is PublishLimits.MaxEndpointsPerService's
	// default.
	DefaultMaxEndpointsPerService = 5000
	// DefaultMaxValueBytes is PublishLimits.MaxValueBytes's default: the largest
	// value a member cluster may write (5,000 endpoints encode to about 0.8 MiB).
	DefaultMaxValueBytes = 1 << 20

	// DefaultLoadBalancerPolicy is LoadBalancer.Policy's default.
	DefaultLoadBalancerPolicy = LoadBalancerRoundRobin
	// DefaultOutlierConsecutiveErrors is OutlierDetection.ConsecutiveErrors's default.
	DefaultOutlierConsecutiveErrors = 5
	// DefaultOutlierInterval is OutlierDetection.Interval's default.
	DefaultOutlierInterval = 10 * time.Second
	// DefaultOutlierBaseEjectionTime is OutlierDetection.BaseEjectionTime's default.
	DefaultOutlierBaseEjectionTime = 30 * time.Second
	// DefaultOutlierMaxEjectionPercent is OutlierDetection.MaxEjectionPercent's default.
	DefaultOutlierMaxEjectionPercent = 10
	// DefaultRetryOn is RetryPolicy.On's default: the one code that says the server
	// did not get the call.
	DefaultRetryOn = RetryOnUnavailable
	// DefaultRetryBackoffBase is RetryBackoff.Base's default.
	DefaultRetryBackoffBase = 25 * time.Millisecond
	// RetryBackoffMaxFactor makes RetryBackoff.Max's default: this times Base.
	RetryBackoffMaxFactor = 10
	// DefaultNamespaceAction is the authorization posture of a namespace no
	// AuthorizationPolicy gives a defaultAction.
	DefaultNamespaceAction = AuthorizationAllow

	// DefaultTrustDomain is the mesh's SPIFFE trust domain unless the hub and agents
	// are given another (--trust-domain).
	DefaultTrustDomain = "meshfed.local"
)
