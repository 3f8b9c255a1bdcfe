package model

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// Reasons a Service is exported, the values of ServiceEndpoints.ExportedBy. They are
// part of the keyspace API: never renamed.
const (
	// ExportedByGlobalService: a GlobalService on the hub selects the Service.
	ExportedByGlobalService = "GlobalService"
	// ExportedByServiceExport: an MCS ServiceExport of the same namespace and name
	// exists in the member cluster.
	ExportedByServiceExport = "ServiceExport"
)

// DefaultPolicy is the policy of a global service that names none, or names one that
// does not exist: the FailoverPolicy API's defaults, except that it holds no failback
// (a hold is something a policy asks for).
func DefaultPolicy() *Policy {
	return &Policy{
		LocalityPreference: string(v1.DefaultLocalityPreference),
		FallbackToAny:      v1.DefaultFallbackToAny,
		MinHealthyPercent:  v1.DefaultMinHealthyPercent,
		DemoteAfter:        metav1.Duration{Duration: v1.DefaultDemoteAfter},
		DropAfter:          metav1.Duration{Duration: v1.DefaultDropAfter},
	}
}
