package v1alpha1

// Condition types and reasons shared by meshfed's objects. Conditions are
// []metav1.Condition, stamped with the object's generation.
const (
	// ConditionAccepted: the object is valid and the hub has written it to etcd.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs: every object this one names exists.
	ConditionResolvedRefs = "ResolvedRefs"

	// ConditionRegistered: the hub has written the cluster's registration and credentials.
	ConditionRegistered = "Registered"
	// ConditionConnected: the cluster's agent holds a live heartbeat lease.
	ConditionConnected = "Connected"
	// ConditionSynced: the cluster's agent has completed its initial publish.
	ConditionSynced = "Synced"
	// ConditionIntermediateCA: the cluster's intermediate CA is signed and not due for
	// renewal (reason Expiring when a third or less of its life is left, Expired after
	// it). Set only when the hub runs the mesh CA.
	ConditionIntermediateCA = "IntermediateCA"
)

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
