package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GlobalServiceSpec says which member services form a global service and how clients
// reach it.
// +kubebuilder:validation:XValidation:rule="!(has(self.service) && has(self.selector))",message="set at most one of service and selector"
// +kubebuilder:validation:XValidation:rule="!has(self.hostname) || self.ports.all(p, size(self.hostname) + size(string(p.port)) <= 241)",message="hostname is too long: east-west gateways route by the TLS server name outbound_.<port>_._.<hostname>, which must fit 255 bytes, so the hostname may have at most 241 characters minus the digits of its longest port (236 for a five-digit port)",fieldPath=".hostname"
type GlobalServiceSpec struct {
	// Hostname is the name clients use, e.g. in xds:///<hostname>:<port>.
	// Defaults to <name>.<namespace>.svc.clusterset.local (the MCS convention).
	// A DNS name of labels of at most 63 characters, short enough that the TLS server
	// name outbound_.<port>_._.<hostname> fits 255 bytes for every port. One
	// hostname belongs to one GlobalService: the oldest claiming it (see the
	// HostnameConflict condition).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
	// +optional
	Hostname string `json:"hostname,omitempty"`

	// Service names the member Service by namespace and name. If neither service nor
	// selector is set, the member Service has the GlobalService's namespace and name.
	// Services exported with an MCS ServiceExport are included as well.
	// +optional
	Service *ServiceReference `json:"service,omitempty"`

	// Selector selects member Services by label in the GlobalService's namespace.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Ports are the global service's ports. A member Service's port matches by name,
	// or by number when the global port has no name.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(p, !has(p.name) || self.exists_one(q, has(q.name) && q.name == p.name))",message="port names must be unique"
	// +listType=map
	// +listMapKey=port
	Ports []GlobalServicePort `json:"ports"`

	// Clusters are the member clusters authorized to provide the service: every
	// reader ignores what any other cluster publishes for it. Empty means every
	// registered cluster (status.providers says "all").
	// +kubebuilder:validation:MaxItems=512
	// +listType=set
	// +optional
	Clusters []ClusterName `json:"clusters,omitempty"`

	// FailoverPolicyRef names a FailoverPolicy in the same namespace. Without one,
	// clients prefer their zone, then their region, then any cluster.
	// +optional
	FailoverPolicyRef *LocalObjectReference `json:"failoverPolicyRef,omitempty"`
}

// ServiceReference names a Service in member clusters.
type ServiceReference struct {
	// Namespace of the member Service; defaults to the GlobalService's namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the member Service.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Protocol is the application protocol of a global service port.
// +kubebuilder:validation:Enum=TCP;TLS;HTTP;HTTP2;GRPC
type Protocol string

// Application protocols of global service ports.
const (
	ProtocolTCP   Protocol = "TCP"
	ProtocolTLS   Protocol = "TLS"
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
)

// GlobalServicePort is one port of a global service.
type GlobalServicePort struct {
	// Name matches the member Service's port of the same name.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Name string `json:"name,omitempty"`

	// Port is the port clients use.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Protocol is the application protocol.
	// +kubebuilder:default=TCP
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`
}

// GlobalServiceStatus reports where the global service's endpoints are.
type GlobalServiceStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted, ResolvedRefs, HostnameConflict.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Hostname is the hostname in use, defaulted if the spec leaves it empty.
	// +optional
	Hostname string `json:"hostname,omitempty"`

	// Providers are the clusters authorized to provide the service: spec.clusters
	// comma-separated, or "all" when spec.clusters is empty.
	// +optional
	Providers string `json:"providers,omitempty"`

	// ReadyEndpoints counts ready endpoints over all clusters.
	// +optional
	ReadyEndpoints int32 `json:"readyEndpoints"`

	// Clusters lists the endpoints per cluster and locality. Only endpoints that serve
	// at least one of the global ports count: those are what clients are sent to.
	// +listType=map
	// +listMapKey=cluster
	// +optional
	Clusters []ClusterEndpoints `json:"clusters,omitempty"`

	// Excluded lists the clusters whose selected Service does not serve a global
	// port, one entry per cluster and port, with the reason: clients are not routed
	// to the cluster on that port.
	// +listType=map
	// +listMapKey=cluster
	// +listMapKey=port
	// +optional
	Excluded []ExcludedCluster `json:"excluded,omitempty"`
}

// ExcludedCluster is a cluster that serves none of a global port's traffic.
type ExcludedCluster struct {
	// Cluster is the MeshCluster's name.
	Cluster string `json:"cluster"`
	// Port is the global port's number.
	Port int32 `json:"port"`
	// Reason is why, in CamelCase: PortNotFound.
	Reason string `json:"reason"`
	// Message says why in words.
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterEndpoints counts one cluster's endpoints of a global service.
type ClusterEndpoints struct {
	// Cluster is the MeshCluster's name.
	Cluster string `json:"cluster"`
	// Localities counts endpoints per zone.
	// +optional
	Localities []LocalityEndpoints `json:"localities,omitempty"`
}

// LocalityEndpoints counts endpoints in one zone.
type LocalityEndpoints struct {
	Region string `json:"region"`
	Zone   string `json:"zone"`
	// Ready endpoints receive traffic.
	Ready int32 `json:"ready"`
	// Total endpoints, ready or not.
	Total int32 `json:"total"`
}

// ProvidersAll is GlobalServiceStatus.Providers of a GlobalService without
// spec.clusters: every registered cluster may provide it.
const ProvidersAll = "all"

// GlobalService is a service exported from member clusters under one global hostname.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gsvc,categories=meshfed
// +kubebuilder:printcolumn:name="Hostname",type=string,JSONPath=`.status.hostname`
// +kubebuilder:printcolumn:name="Ports",type=string,JSONPath=`.spec.ports[*].port`
// +kubebuilder:printcolumn:name="Providers",type=string,JSONPath=`.status.providers`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.failoverPolicyRef.name`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyEndpoints`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1035 label like a Service name: lower-case letters, digits and '-', starting with a letter, at most 63 characters"
type GlobalService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GlobalServiceSpec   `json:"spec"`
	Status GlobalServiceStatus `json:"status,omitempty"`
}

// GlobalServiceList is a list of GlobalServices.
// +kubebuilder:object:root=true
type GlobalServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalService `json:"items"`
}
