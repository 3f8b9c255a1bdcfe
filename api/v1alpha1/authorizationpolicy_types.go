package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuthorizationAction is Allow or Deny.
// +kubebuilder:validation:Enum=Allow;Deny
type AuthorizationAction string

// Authorization actions.
const (
	AuthorizationAllow AuthorizationAction = "Allow"
	AuthorizationDeny  AuthorizationAction = "Deny"
)

// AuthorizationPolicySpec says who may call a global service (or every global service
// of the namespace), by the caller's SPIFFE identity
// spiffe://<cluster>.<trust-domain>/ns/<namespace>/sa/<service-account> and the
// method. Deny rules win; when any Allow rule applies to a service, only calls an
// Allow rule matches pass; otherwise the namespace's default action decides.
// +kubebuilder:validation:XValidation:rule="!has(self.defaultAction) || !has(self.globalService)",message="defaultAction is the namespace's default posture: set it only on a policy without globalService"
// +kubebuilder:validation:XValidation:rule="has(self.defaultAction) || (has(self.rules) && size(self.rules) > 0)",message="set rules (with action), or defaultAction on a namespace-wide policy"
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || size(self.rules) == 0 || has(self.action)",message="set action (Allow or Deny): it says what the rules do"
type AuthorizationPolicySpec struct {
	// GlobalService names the GlobalService in the same namespace the policy applies
	// to. Absent: every global service of the namespace.
	// +optional
	GlobalService GlobalServiceName `json:"globalService,omitempty"`

	// Action is what happens to calls a rule matches.
	// +optional
	Action AuthorizationAction `json:"action,omitempty"`

	// Rules match calls; a call matches a rule when it comes from one of the rule's
	// sources and calls one of its methods.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Rules []AuthorizationRule `json:"rules,omitempty"`

	// DefaultAction is the namespace's default posture (allowed only without
	// globalService): what happens to a call to a service of the namespace that no
	// Allow policy applies to and no Deny rule matches. Absent everywhere: Allow. When
	// policies of the namespace disagree, Deny wins.
	// +optional
	DefaultAction AuthorizationAction `json:"defaultAction,omitempty"`
}

// AuthorizationRule matches calls by caller and method.
type AuthorizationRule struct {
	// From are the callers; a call matches when its caller matches any of them.
	// Empty: any caller.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	From []AuthorizationSource `json:"from,omitempty"`

	// Methods are "/<package>.<Service>/<Method>" or "/<package>.<Service>/*".
	// Empty: any method.
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	Methods []MethodPattern `json:"methods,omitempty"`
}

// AuthorizationSource matches callers by the parts of their identity: every field
// set must match (one of its values), fields not set match anything.
// +kubebuilder:validation:XValidation:rule="(has(self.clusters) && size(self.clusters) > 0) || (has(self.namespaces) && size(self.namespaces) > 0)",message="a source needs clusters, namespaces or both (leave from empty to match any caller)"
// +kubebuilder:validation:XValidation:rule="!has(self.serviceAccounts) || size(self.serviceAccounts) == 0 || (has(self.namespaces) && size(self.namespaces) > 0)",message="serviceAccounts needs namespaces: a service account is named within its namespace"
type AuthorizationSource struct {
	// Clusters the caller runs in (its identity's trust domain <cluster>.<trust-domain>).
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Clusters []ClusterName `json:"clusters,omitempty"`

	// Namespaces the caller runs in.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// ServiceAccounts the caller runs as, in one of Namespaces.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +listType=set
	// +optional
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// AuthorizationPolicy says who may call a global service, or the services of a
// namespace, from any cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=authz,categories=meshfed
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.globalService`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Default",type=string,JSONPath=`.spec.defaultAction`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AuthorizationPolicySpec `json:"spec"`
	Status PolicyStatus            `json:"status,omitempty"`
}

// AuthorizationPolicyList is a list of AuthorizationPolicies.
// +kubebuilder:object:root=true
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}
