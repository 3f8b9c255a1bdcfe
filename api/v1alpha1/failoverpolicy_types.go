package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LocalityPreference says how strongly clients prefer endpoints near them.
// +kubebuilder:validation:Enum=Zone;Region;None
type LocalityPreference string

const (
	// PreferZone: the client's zone, then the rest of its region, then failover
	// targets, then everything else.
	PreferZone LocalityPreference = "Zone"
	// PreferRegion: the client's region (all zones alike), then failover targets,
	// then everything else.
	PreferRegion LocalityPreference = "Region"
	// PreferNone: failover targets in order, then everything else; the client's
	// own locality gets no preference.
	PreferNone LocalityPreference = "None"
)

// FailoverPolicySpec says how clients choose between localities and when they fail over.
// +kubebuilder:validation:XValidation:rule="!(has(self.failover) && size(self.failover) > 0 && has(self.distribute) && size(self.distribute) > 0)",message="set at most one of failover and distribute"
type FailoverPolicySpec struct {
	// LocalityPreference orders the localities nearest the client first.
	// +kubebuilder:default=Zone
	// +optional
	LocalityPreference LocalityPreference `json:"localityPreference,omitempty"`

	// Failover lists, per source region or cluster, the targets to fail over to, in
	// order, after the client's own region has no healthy endpoint.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.exists_one(s, s.from == r.from))",message="each failover source (from) may appear only once"
	// +listType=atomic
	// +optional
	Failover []FailoverRule `json:"failover,omitempty"`

	// Distribute sets traffic weights per locality instead of failover priorities,
	// for clients in the source locality.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.exists_one(s, s.from == r.from))",message="each distribute source (from) may appear only once"
	// +listType=atomic
	// +optional
	Distribute []DistributeRule `json:"distribute,omitempty"`

	// FallbackToAny lets clients use every other locality, lowest priority, after
	// their own locality and the failover targets. Set false to confine traffic to
	// the listed targets.
	// +kubebuilder:default=true
	// +optional
	FallbackToAny *bool `json:"fallbackToAny,omitempty"`

	// MinHealthyPercent is the share of a locality's endpoints that must be healthy for
	// it to take all of its priority's traffic; below it, traffic spills over to the
	// next priority in proportion.
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MinHealthyPercent *int32 `json:"minHealthyPercent,omitempty"`

	// FailbackHold is how long a locality must stay healthy before traffic returns to it.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="failbackHold must be at most 1h"
	// +optional
	FailbackHold *metav1.Duration `json:"failbackHold,omitempty"`

	// StaleCluster says what happens to a cluster whose agent's heartbeat lapsed.
	// +kubebuilder:default={}
	// +optional
	StaleCluster StaleClusterPolicy `json:"staleCluster,omitempty"`
}

// LocalitySelector selects a region or a single cluster.
// +kubebuilder:validation:XValidation:rule="has(self.region) != has(self.cluster)",message="set exactly one of region and cluster"
type LocalitySelector struct {
	// Region selects every cluster in the region.
	// +optional
	Region LocalityName `json:"region,omitempty"`
	// Cluster selects one MeshCluster.
	// +optional
	Cluster ClusterName `json:"cluster,omitempty"`
}

// FailoverRule orders failover targets for clients in a source locality.
// +kubebuilder:validation:XValidation:rule="!self.to.exists(t, (has(t.region) && has(self.from.region) && t.region == self.from.region) || (has(t.cluster) && has(self.from.cluster) && t.cluster == self.from.cluster))",message="a failover rule must not list its source (from) among its targets (to)"
type FailoverRule struct {
	// From is the clients' region or cluster.
	From LocalitySelector `json:"from"`
	// To lists the targets, most preferred first.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u == t))",message="failover targets (to) must not repeat"
	// +listType=atomic
	To []LocalitySelector `json:"to"`
}

// LocalityPattern is "*", "<region>", "<region>/*" or "<region>/<zone>".
// +kubebuilder:validation:MaxLength=127
// +kubebuilder:validation:Pattern=`^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?))?)$`
type LocalityPattern string

// DistributeRule splits the traffic of clients in a source locality by weight.
// +kubebuilder:validation:XValidation:rule="self.to.map(t, t.weight).sum() == 100",message="distribute weights (to[].weight) must sum to 100"
type DistributeRule struct {
	// From is the clients' locality.
	From LocalityPattern `json:"from"`
	// To lists destination localities with their weights, which sum to 100.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u.locality == t.locality))",message="distribute destinations (to[].locality) must not repeat"
	// +listType=atomic
	To []WeightedLocality `json:"to"`
}

// WeightedLocality is a destination locality and its share of traffic.
type WeightedLocality struct {
	// Locality is the destination.
	Locality LocalityPattern `json:"locality"`
	// Weight is the percentage of traffic.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// StaleClusterPolicy says what happens to a cluster whose heartbeat lapsed. Its
// endpoints are demoted to the lowest priority after DemoteAfter and removed after
// DropAfter.
// +kubebuilder:validation:XValidation:rule="!has(self.dropAfter) || !has(self.demoteAfter) || duration(self.dropAfter) > duration(self.demoteAfter)",message="staleCluster.dropAfter must be longer than staleCluster.demoteAfter"
type StaleClusterPolicy struct {
	// DemoteAfter is how long after its last heartbeat a cluster is demoted.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="demoteAfter must be between 1s and 1h"
	// +optional
	DemoteAfter *metav1.Duration `json:"demoteAfter,omitempty"`

	// DropAfter is how long after its last heartbeat a cluster's endpoints are removed.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('720h')",message="dropAfter must be between 10s and 720h"
	// +optional
	DropAfter *metav1.Duration `json:"dropAfter,omitempty"`
}

// FailoverPolicyStatus reports whether the policy is in use.
type FailoverPolicyStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted, ResolvedRefs.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FailoverPolicy says how clients of the GlobalServices that reference it choose between
// localities and when they fail over.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fp,categories=meshfed
// +kubebuilder:printcolumn:name="Preference",type=string,JSONPath=`.spec.localityPreference`
// +kubebuilder:printcolumn:name="Failback",type=string,JSONPath=`.spec.failbackHold`
// +kubebuilder:printcolumn:name="Demote",type=string,JSONPath=`.spec.staleCluster.demoteAfter`
// +kubebuilder:printcolumn:name="Drop",type=string,JSONPath=`.spec.staleCluster.dropAfter`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FailoverPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FailoverPolicySpec   `json:"spec,omitempty"`
	Status FailoverPolicyStatus `json:"status,omitempty"`
}

// FailoverPolicyList is a list of FailoverPolicies.
// +kubebuilder:object:root=true
type FailoverPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FailoverPolicy `json:"items"`
}
