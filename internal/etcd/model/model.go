package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("model: invalid value")

// Record is a decoded etcd value: one of *ClusterInfo, *Heartbeat, *Synced,
// *ServiceEndpoints, *GlobalService, *Policy, *TrafficPolicy, *AuthorizationPolicy, *IntermediateCSR, *Intermediate,
// *EtcdCSR, *EtcdCert, *TrustBundle, *HubReady, *Programmed.
type Record interface {
	// Validate reports whether the value is well-formed.
	Validate() error
}

// ClusterInfo is the hub's registration record of a member cluster
// (keyspace.ClusterInfo), derived from its MeshCluster.
type ClusterInfo struct {
	Name     string            `json:"name"`
	Region   string            `json:"region"`
	Zones    []string          `json:"zones"`
	Network  string            `json:"network"`
	Gateways []Gateway         `json:"gateways,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// AddressRanges are the CIDRs the cluster's endpoints may use (MeshCluster
	// spec.addressRanges). Empty: any address that is not loopback, link-local,
	// unspecified or multicast.
	AddressRanges []string `json:"addressRanges,omitempty"`
	// Limits bound what the cluster may publish; a zero field takes its default
	// (v1alpha1.DefaultMax*).
	Limits PublishLimits `json:"limits,omitzero"`
	// Registration is the cluster's current registration (MeshCluster
	// spec.registration): the hub renews only etcd certificates of this one.
	// Empty: registered before registrations existed.
	Registration string `json:"registration,omitempty"`
}

// PublishLimits bound what one member cluster may publish under its prefix. Every
// reader enforces them on the cluster's records, so that one member cannot cost
// the others more than its share.
type PublishLimits struct {
	// MaxServices is how many services the cluster may publish.
	MaxServices int32 `json:"maxServices,omitempty"`
	// MaxEndpointsPerService is how many endpoints one service record may hold.
	MaxEndpointsPerService int32 `json:"maxEndpointsPerService,omitempty"`
	// MaxValueBytes is the largest value the cluster may write.
	MaxValueBytes int32 `json:"maxValueBytes,omitempty"`
}

// Gateway is an east-west gateway address.
type Gateway struct {
	Address string `json:"address"`
	Port    int32  `json:"port"`
}

// Heartbeat is an agent's liveness record (keyspace.ClusterHeartbeat). It is bound to a
// lease of TTL seconds: it vanishes when the agent stops renewing it. Time is when the
// current lease was granted.
type Heartbeat struct {
	Time  time.Time `json:"time"`
	TTL   int64     `json:"ttlSeconds"`
	Agent string    `json:"agent"`
	// View is the agent's account of the view it imports, for the hub to compare
	// with its own store; absent until the agent's first check, and from agents that
	// predate it.
	View *ViewDigest `json:"view,omitempty"`
	// Version is the agent's build (version.String()); absent from agents that
	// predate it.
	Version string `json:"version,omitempty"`
}

// ViewDigest is what an agent imported from the hub's store, as of one revision:
// kvstore.Digest's string form ("<keys>/<16 hex digits>") of the (key, ModRevision)
// of every record it serves under keyspace.Root. The store's kvstore.DigestAt of Root
// at Revision is equal exactly when the agent's view is in sync.
type ViewDigest struct {
	Revision int64  `json:"revision"`
	Digest   string `json:"digest"`
	// Resyncs counts the agent's resyncs since it started: each one healed a view
	// found to differ from the store.
	Resyncs int64 `json:"resyncs,omitempty"`
}

// Synced is the marker an agent writes after its initial publish
// (keyspace.ClusterSynced).
// Its value is written by kvstore.Writer.MarkSynced.
type Synced struct {
	SyncedAt time.Time `json:"syncedAt"`
}

// ServiceEndpoints is one exported service of one cluster
// (keyspace.ServiceEndpoints): its ports and every endpoint with its zone and
// conditions, as the cluster's EndpointSlices say.
type ServiceEndpoints struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Labels are the member Service's labels, so that every reader can tell which
	// GlobalService selectors select it (see Selects).
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []ServicePort     `json:"ports"`
	Endpoints []Endpoint        `json:"endpoints"`
	// ExportedBy says why the service is exported: ExportedByGlobalService,
	// ExportedByServiceExport.
	ExportedBy []string `json:"exportedBy,omitempty"`
	// ServiceAccounts are the Kubernetes service accounts (in Namespace) the
	// service's endpoints run as: with the cluster's identity domain they name the
	// identities allowed to serve it (trust.ServiceAccountID).
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// ChangedAt is when the writing agent's informer saw the change (an
	// EndpointSlice, Service or Node event) that made this record differ from the
	// one before, on the writing cluster's clock. It feeds one metric only, the
	// propagation time from that cluster to each reader's proxies, which therefore
	// includes the clock skew between the two clusters: no reader trusts it for
	// anything else, and an absurd value (zero, in the future, hours old) is
	// ignored. It is not part of the record's content: a writer that rebuilds a
	// record equal but for ChangedAt does not write it again.
	ChangedAt time.Time `json:"changedAt,omitzero"`
}

// ServicePort is a port of the member Service.
type ServicePort struct {
	Name        string `json:"name,omitempty"`
	Port        int32  `json:"port"`
	Protocol    string `json:"protocol,omitempty"`
	AppProtocol string `json:"appProtocol,omitempty"`
}

// Endpoint is one address behind a service.
type Endpoint struct {
	Address string `json:"address"`
	// Zone from the EndpointSlice, else the node's topology label; "" when unknown.
	Zone string `json:"zone,omitempty"`
	// TargetRef names the object behind the endpoint ("Pod/echo-1"), for humans.
	TargetRef   string `json:"targetRef,omitempty"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating,omitempty"`
	// Ports are the endpoint's ports by the Service port name they serve.
	Ports []EndpointPort `json:"ports"`
	// Labels are the labels of the endpoint's Pod that traffic policies' subsets may
	// select by: at most MaxEndpointLabels, keys and values as Kubernetes allows
	// (package admit refuses an endpoint beyond that). The publisher chooses which.
	Labels map[string]string `json:"labels,omitempty"`
}

// MaxEndpointLabels bounds Endpoint.Labels.
const MaxEndpointLabels = 8

// EndpointPort is the port an endpoint serves a named Service port on.
type EndpointPort struct {
	Name string `json:"name,omitempty"`
	Port int32  `json:"port"`
}

// GlobalService is the hub's record of a GlobalService (keyspace.GlobalService), with
// defaults resolved.
type GlobalService struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Hostname  string `json:"hostname"`
	// Service is the member Service, when the GlobalService names one (or names none and
	// no selector: then it is the GlobalService's own namespace and name).
	Service *ServiceRef `json:"service,omitempty"`
	// Selector selects member Services in Namespace instead.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	Ports    []GlobalPort          `json:"ports"`
	// Clusters limits the member clusters; empty means all.
	Clusters []string `json:"clusters,omitempty"`
	// Policy names a Policy in Namespace; "" for the default behaviour.
	Policy string `json:"policy,omitempty"`
}

// ServiceRef names a member Service.
type ServiceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// GlobalPort is a port of a global service.
type GlobalPort struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
}

// Policy is the hub's record of a FailoverPolicy (keyspace.Policy), with defaults
// resolved.
type Policy struct {
	Namespace          string           `json:"namespace"`
	Name               string           `json:"name"`
	LocalityPreference string           `json:"localityPreference"`
	Failover           []FailoverRule   `json:"failover,omitempty"`
	Distribute         []DistributeRule `json:"distribute,omitempty"`
	FallbackToAny      bool             `json:"fallbackToAny"`
	MinHealthyPercent  int32            `json:"minHealthyPercent"`
	FailbackHold       metav1.Duration  `json:"failbackHold"`
	DemoteAfter        metav1.Duration  `json:"demoteAfter"`
	DropAfter          metav1.Duration  `json:"dropAfter"`
}

// FailoverRule orders failover targets for clients in From.
type FailoverRule struct {
	From Locality   `json:"from"`
	To   []Locality `json:"to"`
}

// Locality selects a region or one cluster: exactly one field is set.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Cluster string `json:"cluster,omitempty"`
}

// DistributeRule splits traffic of clients in From by weight.
type DistributeRule struct {
	From string             `json:"from"`
	To   []WeightedLocality `json:"to"`
}

// WeightedLocality is a locality pattern and its percentage of traffic.
type WeightedLocality struct {
	Locality string `json:"locality"`
	Weight   int32  `json:"weight"`
}

// IntermediateCSR is an agent's request for its cluster's intermediate CA
// (keyspace.ClusterIntermediateCSR): a PEM CSR made in the member cluster, whose key
// never leaves it.
type IntermediateCSR struct {
	TrustDomain string `json:"trustDomain"`
	CSR         string `json:"csr"`
}

// Intermediate is the hub's answer (keyspace.ClusterIntermediate): the signed
// intermediate and the root it chains to, for the CSR with digest CSRDigest.
type Intermediate struct {
	Chain     string    `json:"chain"`
	NotAfter  time.Time `json:"notAfter"`
	CSRDigest string    `json:"csrDigest"`
}

// CSRDigest identifies a CSR in the Intermediate the hub writes for it.
func CSRDigest(csrPEM string) string {
	sum := sha256.Sum256([]byte(csrPEM))
	return hex.EncodeToString(sum[:])
}

// EtcdCSR is an agent's request to renew its etcd client certificate
// (keyspace.ClusterEtcdCSR): a PEM CSR whose common name is the cluster's etcd user,
// made in the member cluster, whose key never leaves it.
type EtcdCSR struct {
	CSR string `json:"csr"`
}

// EtcdCert is the hub's answer (keyspace.ClusterEtcdCert): the client certificate it
// signed with the etcd client CA for the CSR with digest CSRDigest, and when it
// expires. It is the hub's record of the agent's credentials.
type EtcdCert struct {
	Cert      string    `json:"cert"`
	NotAfter  time.Time `json:"notAfter"`
	CSRDigest string    `json:"csrDigest"`
}

// HubReady is the hub's marker (keyspace.HubReady) that the store holds every record
// the hub publishes: written after the leading hub wrote them all. Agents take a store
// without it for one being rebuilt (lost and recreated, restored) and do not prune
// what they serve against it.
type HubReady struct {
	// Since is when the hub that wrote it started leading.
	Since time.Time `json:"since"`
}

// Validate implements Record.
func (r *HubReady) Validate() error {
	if r.Since.IsZero() {
		return invalid("hub ready marker without its time")
	}
	return nil
}

// TrustBundle is every active root of the mesh (keyspace.TrustBundle), PEM.
type TrustBundle struct {
	TrustDomain string `json:"trustDomain"`
	Roots       string `json:"roots"`
}

// Validate implements Record.
func (r *IntermediateCSR) Validate() error {
	if r.TrustDomain == "" || !strings.Contains(r.CSR, "CERTIFICATE REQUEST") {
		return invalid("intermediate CSR needs a trust domain and a PEM CSR")
	}
	return nil
}

// Validate implements Record.
func (r *Intermediate) Validate() error {
	if !strings.Contains(r.Chain, "CERTIFICATE") || r.CSRDigest == "" {
		return invalid("intermediate needs a PEM chain and the digest of its CSR")
	}
	return nil
}

// Validate implements Record.
func (r *EtcdCSR) Validate() error {
	if !strings.Contains(r.CSR, "CERTIFICATE REQUEST") {
		return invalid("etcd CSR needs a PEM CSR")
	}
	return nil
}

// Validate implements Record.
func (r *EtcdCert) Validate() error {
	if !strings.Contains(r.Cert, "CERTIFICATE") || r.CSRDigest == "" || r.NotAfter.IsZero() {
		return invalid("etcd certificate needs a PEM certificate, its expiry and the digest of its CSR")
	}
	return nil
}

// Validate implements Record.
func (r *TrustBundle) Validate() error {
	if r.TrustDomain == "" || !strings.Contains(r.Roots, "CERTIFICATE") {
		return invalid("trust bundle needs a trust domain and PEM roots")
	}
	return nil
}

// Decode parses the value stored at key into the Record its kind holds, validates it,
// and checks that it agrees with the key.
func Decode(key string, value []byte) (Record, error) {
	k, err := keyspace.Parse(key)
	if err != nil {
		return nil, err
	}
	var rec Record
	switch k.Kind {
	case keyspace.KindClusterInfo:
		rec = &ClusterInfo{}
	case keyspace.KindClusterHeartbeat:
		rec = &Heartbeat{}
	case keyspace.KindClusterSynced:
		rec = &Synced{}
	case keyspace.KindServiceEndpoints:
		rec = &ServiceEndpoints{}
	case keyspace.KindGlobalService:
		rec = &GlobalService{}
	case keyspace.KindPolicy:
		rec = &Policy{}
	case keyspace.KindTrafficPolicy:
		rec = &TrafficPolicy{}
	case keyspace.KindAuthorizationPolicy:
		rec = &AuthorizationPolicy{}
	case keyspace.KindIntermediateCSR:
		rec = &IntermediateCSR{}
	case keyspace.KindIntermediate:
		rec = &Intermediate{}
	case keyspace.KindEtcdCSR:
		rec = &EtcdCSR{}
	case keyspace.KindEtcdCert:
		rec = &EtcdCert{}
	case keyspace.KindTrustBundle:
		rec = &TrustBundle{}
	case keyspace.KindHubReady:
		rec = &HubReady{}
	case keyspace.KindProgrammed:
		rec = &Programmed{}
	default:
		return nil, fmt.Errorf("%w: %s has no decoder here", ErrInvalid, k.Kind)
	}
	if err := json.Unmarshal(value, rec); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, key, err)
	}
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if err := agrees(k, rec); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, key, err)
	}
	return rec, nil
}

// Encode returns the JSON value of rec after validating it.
func Encode(rec Record) ([]byte, error) {
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

func agrees(k keyspace.Key, rec Record) error {
	var ns, name string
	switch r := rec.(type) {
	case *ClusterInfo:
		if r.Name != k.Cluster {
			return fmt.Errorf("cluster name %q does not match the key", r.Name)
		}
		return nil
	case *Programmed:
		if r.Cluster != k.Cluster {
			return fmt.Errorf("a cluster reports only for itself: report of %q under cluster %q's key", r.Cluster, k.Cluster)
		}
		return nil
	case *ServiceEndpoints:
		ns, name = r.Namespace, r.Name
	case *GlobalService:
		ns, name = r.Namespace, r.Name
	case *Policy:
		ns, name = r.Namespace, r.Name
	case *TrafficPolicy:
		ns, name = r.Namespace, r.Name
	case *AuthorizationPolicy:
		ns, name = r.Namespace, r.Name
	default:
		return nil
	}
	if ns != k.Namespace || name != k.Name {
		return fmt.Errorf("object %s/%s does not match the key", ns, name)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func checkLabel(what, v string) error {
	if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
		return invalid("%s %q: %s", what, v, errs[0])
	}
	return nil
}

func checkPort(what string, p int32) error {
	if p < 1 || p > 65535 {
		return invalid("%s %d out of range 1-65535", what, p)
	}
	return nil
}

// Validate implements Record.
func (c *ClusterInfo) Validate() error {
	if err := checkLabel("cluster name", c.Name); err != nil {
		return err
	}
	if c.Region == "" || c.Network == "" {
		return invalid("cluster %q: region and network are required", c.Name)
	}
	for _, g := range c.Gateways {
		if g.Address == "" {
			return invalid("cluster %q: gateway without address", c.Name)
		}
		if err := checkPort("gateway port", g.Port); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements Record.
func (h *Heartbeat) Validate() error {
	if h.TTL <= 0 {
		return invalid("heartbeat ttlSeconds must be positive")
	}
	if h.View != nil {
		if h.View.Revision <= 0 {
			return invalid("heartbeat view.revision must be positive")
		}
		if _, err := kvstore.ParseDigest(h.View.Digest); err != nil {
			return invalid("heartbeat view.digest: %v", err)
		}
	}
	return nil
}

// Validate implements Record.
func (s *Synced) Validate() error { return nil }

// Validate implements Record.
func (s *ServiceEndpoints) Validate() error {
	if s.Namespace == "" || s.Name == "" {
		return invalid("service endpoints without namespace or name")
	}
	for _, p := range s.Ports {
		if err := checkPort("service port", p.Port); err != nil {
			return err
		}
	}
	for _, e := range s.Endpoints {
		if _, err := netip.ParseAddr(e.Address); err != nil {
			return invalid("service %s/%s: endpoint address %q is not an IP address", s.Namespace, s.Name, e.Address)
		}
		for _, p := range e.Ports {
			if err := checkPort("endpoint port", p.Port); err != nil {
				return err
			}
		}
	}
	return nil
}

// Validate implements Record.
func (g *GlobalService) Validate() error {
	if g.Namespace == "" || g.Name == "" || g.Hostname == "" {
		return invalid("global service without namespace, name or hostname")
	}
	if (g.Service == nil) == (g.Selector == nil) {
		return invalid("global service %s/%s: exactly one of service and selector is required", g.Namespace, g.Name)
	}
	if g.Selector != nil {
		if err := validSelector(g.Selector); err != nil {
			return err
		}
	}
	if len(g.Ports) == 0 {
		return invalid("global service %s/%s has no ports", g.Namespace, g.Name)
	}
	for _, p := range g.Ports {
		if err := checkPort("global service port", p.Port); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements Record.
func (p *Policy) Validate() error {
	if p.Namespace == "" || p.Name == "" {
		return invalid("policy without namespace or name")
	}
	if !slices.Contains([]string{"Zone", "Region", "None"}, p.LocalityPreference) {
		return invalid("policy %s/%s: unknown locality preference %q", p.Namespace, p.Name, p.LocalityPreference)
	}
	if p.MinHealthyPercent < 0 || p.MinHealthyPercent > 100 {
		return invalid("policy %s/%s: minHealthyPercent %d out of range 0-100", p.Namespace, p.Name, p.MinHealthyPercent)
	}
	if p.DemoteAfter.Duration <= 0 || p.DropAfter.Duration <= p.DemoteAfter.Duration {
		return invalid("policy %s/%s: need 0 < demoteAfter < dropAfter", p.Namespace, p.Name)
	}
	for _, r := range p.Failover {
		if (r.From.Region == "") == (r.From.Cluster == "") {
			return invalid("policy %s/%s: a failover source needs exactly one of region and cluster", p.Namespace, p.Name)
		}
	}
	for _, r := range p.Distribute {
		var sum int32
		for _, t := range r.To {
			sum += t.Weight
		}
		if sum != 100 {
			return invalid("policy %s/%s: distribute weights from %q sum to %d, not 100", p.Namespace, p.Name, r.From, sum)
		}
	}
	return nil
}
