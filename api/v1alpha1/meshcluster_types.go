package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshClusterSpec describes a member cluster of the federation.
type MeshClusterSpec struct {
	// Region is the cluster's region, as in the topology.kubernetes.io/region label.
	// It is immutable: to move a cluster, unregister it and register it again.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="region is immutable: unregister the cluster and register it again to move it"
	Region LocalityName `json:"region"`

	// Zones are the cluster's zones, as in the topology.kubernetes.io/zone label.
	// A cluster may publish endpoints only in these zones: every reader drops endpoints
	// in a zone not listed here (an endpoint with no zone is routed as the region's
	// unknown zone).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	Zones []LocalityName `json:"zones"`

	// Network names the flat network the cluster's pods are on. Clusters on the same
	// network reach each other's endpoints directly; traffic to a cluster on another
	// network goes through that cluster's east-west gateways.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Network string `json:"network,omitempty"`

	// Gateways are the addresses at which the cluster's east-west gateway is reached
	// from other networks.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(g, self.exists_one(h, h.address == g.address && h.port == g.port))",message="gateways must not repeat an address and port"
	// +listType=atomic
	// +optional
	Gateways []GatewayAddress `json:"gateways,omitempty"`

	// AddressRanges are the address ranges the cluster's endpoints may use, usually
	// its pod and service CIDRs (meshfedctl cluster register discovers them). Every
	// reader drops the cluster's endpoints outside them. Empty: any routable address
	// (never loopback, link-local, unspecified or multicast), as status.addressRanges
	// says.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	AddressRanges []CIDR `json:"addressRanges,omitempty"`

	// Limits bound what the cluster may publish. Every reader enforces them on the
	// cluster's records and reports what it dropped (PublishedDataValid).
	// +kubebuilder:default={}
	// +optional
	Limits PublishLimits `json:"limits,omitempty"`

	// Registration names the cluster's current registration: its agent's etcd
	// credentials carry it (etcd user meshfed-cluster-<name>.<registration>), and
	// credentials of any other registration are refused by etcd. `meshfedctl cluster
	// register` sets a new random one whenever it issues credentials for a cluster
	// without a valid registration (new, revoked, or registered before registrations
	// existed); certificates of earlier registrations never work again. Empty: the
	// cluster was registered before registrations existed and its agent uses the
	// etcd user meshfed-cluster-<name>, until it is registered again.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{16}$`
	// +optional
	Registration string `json:"registration,omitempty"`

	// Revoked cuts the cluster off the federation at once while keeping its
	// MeshCluster: the hub deletes its etcd user (so etcd refuses every certificate of
	// its registration, and ends their open watches) and its records (so every reader
	// drops its endpoints). `meshfedctl cluster revoke` sets it; `meshfedctl cluster
	// register` clears it with a new Registration.
	// +optional
	Revoked bool `json:"revoked,omitempty"`
}

// PublishLimits bound what one member cluster may publish, so that it cannot cost
// the other clusters more than its share of the hub's store and of their agents.
type PublishLimits struct {
	// MaxServices is how many services the cluster may publish; readers refuse the
	// excess and report it.
	// +kubebuilder:default=2000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxServices int32 `json:"maxServices,omitempty"`

	// MaxEndpointsPerService is how many endpoints one published service may hold;
	// readers drop a record with more.
	// +kubebuilder:default=5000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxEndpointsPerService int32 `json:"maxEndpointsPerService,omitempty"`

	// MaxValueBytes is the largest value the cluster may write to the hub's store;
	// readers refuse larger ones. At most 1.5 MiB, etcd's default request limit.
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=1572864
	// +optional
	MaxValueBytes int32 `json:"maxValueBytes,omitempty"`
}

// GatewayAddress is one address of an east-west gateway.
type GatewayAddress struct {
	// Address is an IP address or a DNS name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="address must be an IP address or a lower-case DNS name"
	Address string `json:"address"`

	// Port is the gateway's TLS port.
	// +kubebuilder:default=15443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// MeshClusterStatus is the hub's view of a member cluster.
type MeshClusterStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Registered, Connected, Synced, CredentialsValid, ViewInSync,
	// IntermediateCA, PublishedDataValid.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastHeartbeatTime is when the hub last saw the agent's heartbeat.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// ExportedServices counts the services the cluster publishes.
	// +optional
	ExportedServices int32 `json:"exportedServices"`

	// ExportedEndpoints counts the endpoints the cluster publishes, ready or not.
	// +optional
	ExportedEndpoints int32 `json:"exportedEndpoints"`

	// IntermediateCAExpiry is when the cluster's intermediate CA certificate expires.
	// +optional
	IntermediateCAExpiry *metav1.Time `json:"intermediateCAExpiry,omitempty"`

	// AddressRanges are the ranges readers accept the cluster's endpoints in, as the
	// hub wrote them to the cluster's registration: spec.addressRanges
	// comma-separated, or "any routable" when spec.addressRanges is empty.
	// +optional
	AddressRanges string `json:"addressRanges,omitempty"`

	// CredentialsExpiry is when the agent's etcd client certificate expires, as the
	// hub last signed it (the agent renews it at two thirds of its life).
	// +optional
	CredentialsExpiry *metav1.Time `json:"credentialsExpiry,omitempty"`

	// AgentVersion is the build of the cluster's agent, as its last heartbeat said
	// (e.g. "v0.3.0 (commit …, go1.26.8, linux/amd64)"); empty until an agent that
	// reports it has written a heartbeat.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`
}

// AddressRangesAnyRoutable is MeshClusterStatus.AddressRanges of a cluster without
// spec.addressRanges: readers accept any address that is not loopback, link-local,
// unspecified or multicast.
const AddressRangesAnyRoutable = "any routable"

// MeshCluster is a member cluster of the federation.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mc,categories=meshfed
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.conditions[?(@.type=="Connected")].status`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.conditions[?(@.type=="Synced")].status`
// +kubebuilder:printcolumn:name="Published",type=string,JSONPath=`.status.conditions[?(@.type=="PublishedDataValid")].reason`
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.exportedServices`
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=`.status.exportedEndpoints`
// +kubebuilder:printcolumn:name="Heartbeat",type=date,JSONPath=`.status.lastHeartbeatTime`
// +kubebuilder:printcolumn:name="Credentials",type=string,JSONPath=`.status.conditions[?(@.type=="CredentialsValid")].reason`,priority=1
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.status.addressRanges`,priority=1
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agentVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters"
type MeshCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshClusterSpec   `json:"spec"`
	Status MeshClusterStatus `json:"status,omitempty"`
}

// MeshClusterList is a list of MeshClusters.
// +kubebuilder:object:root=true
type MeshClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshCluster `json:"items"`
}
