package trust

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// Organization is the subject organization of every meshfed CA and workload
// certificate.
const Organization = "meshfed"

// Lifetimes.
const (
	// DefaultRootLifetime is the life of a mesh root (see package meshca).
	DefaultRootLifetime = 10 * 365 * 24 * time.Hour
	// DefaultIntermediateLifetime is the life of a member cluster's intermediate when
	// the hub is asked for none. Long, because a member keeps issuing workload
	// certificates while the hub is down (static stability); NeedsRenewal asks for a new
	// one after two thirds of it.
	DefaultIntermediateLifetime = 365 * 24 * time.Hour
	// MinIntermediateLifetime is the shortest intermediate the hub signs.
	MinIntermediateLifetime = time.Hour
	// DefaultWorkloadLifetime is the life of a workload certificate when IssueWorkload
	// is given none.
	DefaultWorkloadLifetime = 24 * time.Hour
)

// Sentinel errors. Errors returned by this package wrap them.
var (
	// ErrInvalid marks input that can never succeed: a malformed trust domain, name,
	// CSR or certificate.
	ErrInvalid = errors.New("trust: invalid")
	// ErrWrongCluster marks a CSR that names a cluster other than the one it was
	// submitted for. It also wraps ErrInvalid.
	ErrWrongCluster = errors.New("trust: CSR names another cluster")
	// ErrTrustDomainMismatch marks a trust domain other than the one the mesh's root
	// was made for.
	ErrTrustDomainMismatch = errors.New("trust: trust domain mismatch")
	// ErrNotVerified marks a certificate chain that Verify rejects.
	ErrNotVerified = errors.New("trust: not verified")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateTrustDomain reports whether td is a SPIFFE trust domain name (lowercase
// letters, digits, '.', '-', '_'; no scheme, port or path).
func ValidateTrustDomain(td string) error {
	_, err := trustDomain(td)
	return err
}

func trustDomain(td string) (spiffeid.TrustDomain, error) {
	if td == "" || strings.ContainsAny(td, ":/") {
		return spiffeid.TrustDomain{}, invalidf("trust domain %q: want a bare name such as example.org", td)
	}
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return spiffeid.TrustDomain{}, invalidf("trust domain %q: %v", td, err)
	}
	return t, nil
}

// ClusterID is the SPIFFE ID a member cluster's intermediate CA carries:
// spiffe://<trust-domain>/cluster/<cluster>.
func ClusterID(trustDomainName, cluster string) (string, error) {
	td, err := trustDomain(trustDomainName)
	if err != nil {
		return "", err
	}
	if err := keyspace.ValidateCluster(cluster); err != nil {
		return "", invalidf("%v", err)
	}
	id, err := spiffeid.FromSegments(td, "cluster", cluster)
	if err != nil {
		return "", invalidf("cluster %q: %v", cluster, err)
	}
	return id.String(), nil
}

// WorkloadID is the SPIFFE ID of service account serviceAccount in namespace of
// cluster, spiffe://<cluster>.<trust-domain>/ns/<ns>/sa/<sa> (ServiceAccountID),
// with every part validated.
func WorkloadID(trustDomainName, cluster, namespace, serviceAccount string) (string, error) {
	if _, err := trustDomain(trustDomainName); err != nil {
		return "", err
	}
	if err := keyspace.ValidateCluster(cluster); err != nil {
		return "", invalidf("%v", err)
	}
	td, err := trustDomain(ClusterTrustDomain(trustDomainName, cluster))
	if err != nil {
		return "", err
	}
	if err := keyspace.ValidateNamespace(namespace); err != nil {
		return "", invalidf("%v", err)
	}
	if msgs := validation.IsDNS1123Subdomain(serviceAccount); len(msgs) > 0 {
		return "", invalidf("service account %q: %s", serviceAccount, strings.Join(msgs, "; "))
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return "", invalidf("workload %s/%s: %v", namespace, serviceAccount, err)
	}
	return id.String(), nil
}

// IntermediateCommonName is the subject common name of a cluster's intermediate.
func IntermediateCommonName(cluster string) string { return intermediateCNPrefix + cluster }

const intermediateCNPrefix = "meshfed intermediate "

// RootCommonName is the subject common name of a root made for trustDomain.
func RootCommonName(trustDomain string) string { return "meshfed root " + trustDomain }

// ClusterTrustDomain is the identity domain of a member cluster's workloads,
// <cluster>.<trust-domain>: the cluster's intermediate may sign URIs with this
// host only (X.509 name constraints), so one cluster's key cannot mint another
// cluster's identities.
func ClusterTrustDomain(trustDomain, cluster string) string { return cluster + "." + trustDomain }

// ServiceAccountID is the SPIFFE ID of service account sa in namespace ns of
// cluster: spiffe://<cluster>.<trust-domain>/ns/<ns>/sa/<sa>. Its inputs are not
// validated (WorkloadID validates).
func ServiceAccountID(trustDomain, cluster, namespace, serviceAccount string) string {
	return "spiffe://" + ClusterTrustDomain(trustDomain, cluster) + "/ns/" + namespace + "/sa/" + serviceAccount
}
