package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GlobalServiceName is the name of a GlobalService: a DNS-1035 label.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
type GlobalServiceName string

// SectionName names a part of a policy (a subset, a route): a DNS-1123 label.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
type SectionName string

// MethodPattern names gRPC methods: "/<package>.<Service>/<Method>" for one method,
// or "/<package>.<Service>/*" for every method of the service.
// +kubebuilder:validation:MaxLength=256
// +kubebuilder:validation:Pattern=`^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/([A-Za-z_][A-Za-z0-9_]*|\*)$`
type MethodPattern string

// PolicyStatus reports whether a TrafficPolicy or AuthorizationPolicy is in use.
type PolicyStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted, ResolvedRefs, Programmed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Clusters says, per connected member cluster whose proxies use the resources
	// the policy shapes, which generation of the policy they were programmed with,
	// or why not. Sorted by cluster.
	// +listType=map
	// +listMapKey=cluster
	// +kubebuilder:validation:MaxItems=1024
	// +optional
	Clusters []ClusterProgrammed `json:"clusters,omitempty"`
}

// ClusterProgrammed is whether one cluster's proxies took a generation of a policy.
type ClusterProgrammed struct {
	// Cluster is the MeshCluster's name.
	Cluster string `json:"cluster"`
	// Generation is the policy's generation the cluster reported on.
	Generation int64 `json:"generation"`
	// Programmed is true when the cluster's proxies accepted the resources built from
	// that generation.
	Programmed bool `json:"programmed"`
	// Message says why not: the proxies' refusal.
	// +optional
	Message string `json:"message,omitempty"`
}
