package v1alpha1

// LocalityName is a region or zone name as found in the topology.kubernetes.io labels.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
type LocalityName string

// ClusterName is the name of a MeshCluster: a DNS-1123 label.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
type ClusterName string

// CIDR is an IP address range in CIDR notation with no host bits set, e.g.
// 10.244.0.0/16 or fd00:10:244::/56.
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self) == cidr(self).masked()",message="must be an address range in CIDR notation with no host bits set, e.g. 10.244.0.0/16 or fd00:10:244::/56"
type CIDR string
