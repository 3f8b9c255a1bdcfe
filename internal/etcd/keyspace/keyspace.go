package keyspace

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Root is the versioned root of every meshfed key. It ends in '/'.
const Root = "/meshfed/v1/"

// Fixed path segments. They are unexported so that callers build keys only
// through the functions below.
const (
	segClusters  = "clusters"
	segInfo      = "info"
	segHeartbeat = "heartbeat"
	segServices  = "services"
	segSynced    = "synced"
	segICSR      = "intermediate-csr"
	segInterm    = "intermediate"
	segEtcdCSR   = "etcd-csr"
	segEtcdCert  = "etcd-cert"
	segProgram   = "programmed"
	segGlobal    = "global"
	segPolicies  = "policies"
	segTraffic   = "traffic"
	segAuthz     = "authz"
	segTrust     = "trust"
	segBundle    = "bundle"
	segHub       = "hub"
	segReady     = "ready"
)

var (
	// ErrUnknownKey is wrapped by every error Parse returns: the key is not one
	// this version of the layout defines.
	ErrUnknownKey = errors.New("keyspace: unknown key")
	// ErrInvalidName is wrapped by the Validate functions, and by Parse when a
	// key has the right shape but a segment is not a valid name.
	ErrInvalidName = errors.New("keyspace: invalid name")
)

// Kind says which entry of the layout a key is.
type Kind int

// The kinds of key. KindUnknown is the zero value and is never returned by a
// successful Parse.
const (
	KindUnknown Kind = iota
	// KindClusterInfo is the hub's registration record of a cluster.
	KindClusterInfo
	// KindClusterHeartbeat is an agent's lease-bound liveness key.
	KindClusterHeartbeat
	// KindServiceEndpoints is an agent's record of one exported service.
	KindServiceEndpoints
	// KindClusterSynced is an agent's marker that its initial publish is complete.
	KindClusterSynced
	// KindGlobalService is the hub's record of a GlobalService.
	KindGlobalService
	// KindPolicy is the hub's record of a FailoverPolicy.
	KindPolicy
	// KindTrustBundle is the hub's record of the active trust roots.
	KindTrustBundle
	// KindIntermediateCSR is an agent's request for its cluster's intermediate CA.
	KindIntermediateCSR
	// KindIntermediate is the hub's answer: the cluster's signed intermediate.
	KindIntermediate
	// KindEtcdCSR is an agent's request to renew its etcd client certificate.
	KindEtcdCSR
	// KindEtcdCert is the hub's answer: the agent's renewed etcd client certificate.
	KindEtcdCert
	// KindHubReady is the hub's marker that the store holds everything it
	// publishes: readers take a store without it for one being rebuilt.
	KindHubReady
	// KindTrafficPolicy is the hub's record of a TrafficPolicy.
	KindTrafficPolicy
	// KindAuthorizationPolicy is the hub's record of an AuthorizationPolicy.
	KindAuthorizationPolicy
	// KindProgrammed is an agent's report of which policy generations its proxies
	// took (ACKed) or refused (NACKed).
	KindProgrammed
)

var kindNames = [...]string{
	KindUnknown:             "Unknown",
	KindClusterInfo:         "ClusterInfo",
	KindClusterHeartbeat:    "ClusterHeartbeat",
	KindServiceEndpoints:    "ServiceEndpoints",
	KindClusterSynced:       "ClusterSynced",
	KindGlobalService:       "GlobalService",
	KindPolicy:              "Policy",
	KindTrustBundle:         "TrustBundle",
	KindIntermediateCSR:     "IntermediateCSR",
	KindIntermediate:        "Intermediate",
	KindEtcdCSR:             "EtcdCSR",
	KindEtcdCert:            "EtcdCert",
	KindHubReady:            "HubReady",
	KindTrafficPolicy:       "TrafficPolicy",
	KindAuthorizationPolicy: "AuthorizationPolicy",
	KindProgrammed:          "Programmed",
}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Key is a parsed key. Fields a kind does not use are empty: Cluster is set for
// the cluster kinds, Namespace and Name for the service and policy kinds.
type Key struct {
	Kind      Kind
	Cluster   string
	Namespace string
	Name      string
}

// String returns the etcd key k stands for. It panics if k is not a valid key,
// like the builders; a Key returned by Parse is always valid.
func (k Key) String() string {
	switch k.Kind {
	case KindClusterInfo:
		return ClusterInfo(k.Cluster)
	case KindClusterHeartbeat:
		return ClusterHeartbeat(k.Cluster)
	case KindServiceEndpoints:
		return ServiceEndpoints(k.Cluster, k.Namespace, k.Name)
	case KindClusterSynced:
		return ClusterSynced(k.Cluster)
	case KindGlobalService:
		return GlobalService(k.Namespace, k.Name)
	case KindPolicy:
		return Policy(k.Namespace, k.Name)
	case KindTrafficPolicy:
		return TrafficPolicy(k.Namespace, k.Name)
	case KindAuthorizationPolicy:
		return AuthorizationPolicy(k.Namespace, k.Name)
	case KindTrustBundle:
		return TrustBundle()
	case KindHubReady:
		return HubReady()
	case KindIntermediateCSR:
		return ClusterIntermediateCSR(k.Cluster)
	case KindIntermediate:
		return ClusterIntermediate(k.Cluster)
	case KindEtcdCSR:
		return ClusterEtcdCSR(k.Cluster)
	case KindEtcdCert:
		return ClusterEtcdCert(k.Cluster)
	case KindProgrammed:
		return ClusterProgrammed(k.Cluster)
	default:
		panic(fmt.Sprintf("keyspace: String of key with kind %v", k.Kind))
	}
}

// ValidateCluster reports whether name can be a cluster segment: a DNS-1123
// label (lower-case alphanumerics and '-', at most 63 characters). Labels, not
// subdomains, because the cluster name also appears in DNS names, SNI and
// etcd user names.
func ValidateCluster(name string) error {
	return validate("cluster", name, validation.IsDNS1123Label)
}

// ValidateNamespace reports whether ns can be a namespace segment: a DNS-1123
// label, as Kubernetes requires of namespace names.
func ValidateNamespace(ns string) error {
	return validate("namespace", ns, validation.IsDNS1123Label)
}

// ValidateName reports whether name can be an object-name segment: a DNS-1123
// subdomain (at most 253 characters, '.' allowed), which admits every Service,
// GlobalService and FailoverPolicy name the API server accepts.
func ValidateName(name string) error {
	return validate("name", name, validation.IsDNS1123Subdomain)
}

func validate(what, value string, check func(string) []string) error {
	if msgs := check(value); len(msgs) > 0 {
		return fmt.Errorf("%w: %s %q: %s", ErrInvalidName, what, value, strings.Join(msgs, "; "))
	}
	return nil
}

// must panics on a validation error: see "Invalid input" in the package doc.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// ClustersPrefix is the prefix of every per-cluster key: agents watch it to
// import the other clusters' state.
func ClustersPrefix() string {
	return Root + segClusters + "/"
}

// ClusterPrefix is the prefix of every key one cluster's agent may write; its
// etcd role grants write access to exactly this prefix.
func ClusterPrefix(cluster string) string {
	must(ValidateCluster(cluster))
	return ClustersPrefix() + cluster + "/"
}

// ClusterInfo is the key of a cluster's registration, written by the hub.
//
// It lies under ClusterPrefix(cluster) for locality of reads; the etcd role of
// the agent must still deny it writes there (see docs/keyspace.md).
func ClusterInfo(cluster string) string {
	return ClusterPrefix(cluster) + segInfo
}

// ClusterHeartbeat is the key of a cluster's lease-bound heartbeat.
func ClusterHeartbeat(cluster string) string {
	return ClusterPrefix(cluster) + segHeartbeat
}

// ClusterSynced is the key of a cluster's synced marker, written once every
// key of its initial publish is in etcd.
func ClusterSynced(cluster string) string {
	return ClusterPrefix(cluster) + segSynced
}

// ClusterIntermediateCSR is the key of a cluster's CSR for its intermediate CA,
// written by its agent (the key stays in the member cluster).
func ClusterIntermediateCSR(cluster string) string {
	return ClusterPrefix(cluster) + segICSR
}

// ClusterIntermediate is the key of a cluster's signed intermediate CA chain,
// written by the hub.
func ClusterIntermediate(cluster string) string {
	return ClusterPrefix(cluster) + segInterm
}

// ClusterEtcdCSR is the key of a cluster's CSR renewing its agent's etcd client
// certificate, written by its agent (the key stays in the member cluster).
func ClusterEtcdCSR(cluster string) string {
	return ClusterPrefix(cluster) + segEtcdCSR
}

// ClusterEtcdCert is the key of the hub's answer to ClusterEtcdCSR: the renewed etcd
// client certificate, written by the hub. The agent's etcd role must deny it writes.
func ClusterEtcdCert(cluster string) string {
	return ClusterPrefix(cluster) + segEtcdCert
}

// ClusterProgrammed is the key of a cluster's report on the policies its proxies
// were programmed with (ACKed) or refused (NACKed), written by its agent's leader.
func ClusterProgrammed(cluster string) string {
	return ClusterPrefix(cluster) + segProgram
}

// ClusterServices is the prefix of every ServiceEndpoints key of a cluster.
func ClusterServices(cluster string) string {
	return ClusterPrefix(cluster) + segServices + "/"
}

// ServiceEndpoints is the key of one service's endpoints in one cluster.
func ServiceEndpoints(cluster, namespace, name string) string {
	return ClusterServices(cluster) + nsName(namespace, name)
}

// GlobalServicesPrefix is the prefix of every GlobalService key.
func GlobalServicesPrefix() string {
	return Root + segGlobal + "/" + segServices + "/"
}

// GlobalService is the key of one GlobalService, written by the hub.
func GlobalService(namespace, name string) string {
	return GlobalServicesPrefix() + nsName(namespace, name)
}

// PoliciesPrefix is the prefix of every FailoverPolicy key.
func PoliciesPrefix() string {
	return Root + segGlobal + "/" + segPolicies + "/"
}

// Policy is the key of one FailoverPolicy, written by the hub.
func Policy(namespace, name string) string {
	return PoliciesPrefix() + nsName(namespace, name)
}

// TrafficPoliciesPrefix is the prefix of every TrafficPolicy key.
func TrafficPoliciesPrefix() string {
	return Root + segGlobal + "/" + segTraffic + "/"
}

// TrafficPolicy is the key of one TrafficPolicy, written by the hub.
func TrafficPolicy(namespace, name string) string {
	return TrafficPoliciesPrefix() + nsName(namespace, name)
}

// AuthorizationPoliciesPrefix is the prefix of every AuthorizationPolicy key.
func AuthorizationPoliciesPrefix() string {
	return Root + segGlobal + "/" + segAuthz + "/"
}

// AuthorizationPolicy is the key of one AuthorizationPolicy, written by the hub.
func AuthorizationPolicy(namespace, name string) string {
	return AuthorizationPoliciesPrefix() + nsName(namespace, name)
}

// TrustBundle is the key of the mesh's active trust roots, written by the hub.
func TrustBundle() string {
	return Root + segTrust + "/" + segBundle
}

// HubReady is the key of the hub's marker that the store holds every record the hub
// publishes (the global services, policies, trust bundle and clusters' registrations),
// written after the hub wrote them all.
func HubReady() string {
	return Root + segHub + "/" + segReady
}

func nsName(namespace, name string) string {
	must(ValidateNamespace(namespace))
	must(ValidateName(name))
	return namespace + "/" + name
}

// Parse returns the Key that key stands for. Any key this layout does not
// define, including one with an invalid segment, yields an error wrapping
// ErrUnknownKey (and ErrInvalidName for a bad segment). Parse never panics.
func Parse(key string) (Key, error) {
	rest, ok := strings.CutPrefix(key, Root)
	if !ok {
		return Key{}, fmt.Errorf("%w %q: not under %s", ErrUnknownKey, key, Root)
	}
	p := strings.Split(rest, "/")

	var k Key
	switch {
	case len(p) == 3 && p[0] == segClusters && p[2] == segInfo:
		k = Key{Kind: KindClusterInfo, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segHeartbeat:
		k = Key{Kind: KindClusterHeartbeat, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segSynced:
		k = Key{Kind: KindClusterSynced, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segICSR:
		k = Key{Kind: KindIntermediateCSR, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segInterm:
		k = Key{Kind: KindIntermediate, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segEtcdCSR:
		k = Key{Kind: KindEtcdCSR, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segEtcdCert:
		k = Key{Kind: KindEtcdCert, Cluster: p[1]}
	case len(p) == 3 && p[0] == segClusters && p[2] == segProgram:
		k = Key{Kind: KindProgrammed, Cluster: p[1]}
	case len(p) == 5 && p[0] == segClusters && p[2] == segServices:
		k = Key{Kind: KindServiceEndpoints, Cluster: p[1], Namespace: p[3], Name: p[4]}
	case len(p) == 4 && p[0] == segGlobal && p[1] == segServices:
		k = Key{Kind: KindGlobalService, Namespace: p[2], Name: p[3]}
	case len(p) == 4 && p[0] == segGlobal && p[1] == segPolicies:
		k = Key{Kind: KindPolicy, Namespace: p[2], Name: p[3]}
	case len(p) == 4 && p[0] == segGlobal && p[1] == segTraffic:
		k = Key{Kind: KindTrafficPolicy, Namespace: p[2], Name: p[3]}
	case len(p) == 4 && p[0] == segGlobal && p[1] == segAuthz:
		k = Key{Kind: KindAuthorizationPolicy, Namespace: p[2], Name: p[3]}
	case len(p) == 2 && p[0] == segTrust && p[1] == segBundle:
		k = Key{Kind: KindTrustBundle}
	case len(p) == 2 && p[0] == segHub && p[1] == segReady:
		k = Key{Kind: KindHubReady}
	default:
		return Key{}, fmt.Errorf("%w %q: no such entry in the layout", ErrUnknownKey, key)
	}
	if err := k.validate(); err != nil {
		return Key{}, fmt.Errorf("%w %q: %w", ErrUnknownKey, key, err)
	}
	return k, nil
}

// validate checks the segments k's kind uses.
func (k Key) validate() error {
	switch k.Kind {
	case KindClusterInfo, KindClusterHeartbeat, KindClusterSynced, KindIntermediateCSR, KindIntermediate, KindEtcdCSR, KindEtcdCert,
		KindProgrammed:
		return ValidateCluster(k.Cluster)
	case KindServiceEndpoints:
		return firstErr(ValidateCluster(k.Cluster), ValidateNamespace(k.Namespace), ValidateName(k.Name))
	case KindGlobalService, KindPolicy, KindTrafficPolicy, KindAuthorizationPolicy:
		return firstErr(ValidateNamespace(k.Namespace), ValidateName(k.Name))
	}
	return nil
}

// firstErr keeps Parse's error to one line: the first bad segment is enough.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
