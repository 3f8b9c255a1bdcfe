package hubinfo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// Namespace holds meshfed's objects: the hub's on the hub, the agent's in members.
const Namespace = "meshfed-system"

// ConfigMapName is the hub's ConfigMap in Namespace.
const ConfigMapName = "meshfed-hub"

// Keys of the hub's ConfigMap.
const (
	KeyEtcdEndpoints = "etcdEndpoints" // comma-separated URLs for agents
	KeyEtcdCA        = "etcdCA.crt"    // PEM CA of etcd's serving certificate
	KeyVersion       = "version"       // the hub's build (version.String()); absent from older hubs
)

// SignerName is the Kubernetes CSR signer of agents' etcd client certificates.
const SignerName = "meshfed.io/etcd-client"

// Info is what the hub publishes.
type Info struct {
	EtcdEndpoints []string
	EtcdCA        []byte
	// Version is the hub's build; "" from a hub that predates it.
	Version string
}

// Read reads the hub's ConfigMap.
func Read(ctx context.Context, hub kubernetes.Interface) (Info, error) {
	cm, err := hub.CoreV1().ConfigMaps(Namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Info{}, fmt.Errorf("the hub has not published %s/%s: is `meshfed hub` running against this API server?", Namespace, ConfigMapName)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read hub info: %w", err)
	}
	info := Info{EtcdCA: []byte(cm.Data[KeyEtcdCA]), Version: cm.Data[KeyVersion]}
	for _, e := range strings.Split(cm.Data[KeyEtcdEndpoints], ",") {
		if e = strings.TrimSpace(e); e != "" {
			info.EtcdEndpoints = append(info.EtcdEndpoints, e)
		}
	}
	if len(info.EtcdEndpoints) == 0 || len(info.EtcdCA) == 0 {
		return Info{}, fmt.Errorf("hub info %s/%s lacks %s or %s", Namespace, ConfigMapName, KeyEtcdEndpoints, KeyEtcdCA)
	}
	return info, nil
}

// etcdUserPrefix starts every cluster's etcd user and role name.
const etcdUserPrefix = "meshfed-cluster-"

// EtcdRole is the etcd role of a member cluster: what its agent may read and write.
// Before registrations existed it was also the agent's etcd user (see EtcdUser).
func EtcdRole(cluster string) string { return etcdUserPrefix + cluster }

// EtcdUser is the etcd user of one registration of a member cluster, and the common
// name of its agent's client certificates: meshfed-cluster-<cluster>.<registration>.
// Each registration has a user of its own, bound to the cluster's role, so deleting
// it refuses exactly that registration's certificates. Registration "" is the user of
// a cluster registered before registrations existed: the role's name.
func EtcdUser(cluster, registration string) string {
	if registration == "" {
		return EtcdRole(cluster)
	}
	return EtcdRole(cluster) + "." + registration
}

// ParseEtcdUser returns the cluster and registration ("" for the user of a cluster
// registered before registrations existed) of a cluster's etcd user.
func ParseEtcdUser(user string) (cluster, registration string, ok bool) {
	rest, ok := strings.CutPrefix(user, etcdUserPrefix)
	if !ok {
		return "", "", false
	}
	cluster, registration, dotted := strings.Cut(rest, ".")
	if keyspace.ValidateCluster(cluster) != nil || (dotted && ValidateRegistration(registration) != nil) {
		return "", "", false
	}
	return cluster, registration, true
}

// registrationBytes is the randomness of a registration: 64 bits, 16 hex digits.
const registrationBytes = 8

// NewRegistration returns a new random registration name.
func NewRegistration() string {
	b := make([]byte, registrationBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// ValidateRegistration checks that s is a registration name, as NewRegistration makes:
// 16 lower-case hex digits.
func ValidateRegistration(s string) error {
	if len(s) != 2*registrationBytes || strings.Trim(s, "0123456789abcdef") != "" {
		return fmt.Errorf("registration %q: want %d lower-case hex digits", s, 2*registrationBytes)
	}
	return nil
}

// Scheme holds the Kubernetes types and meshfed's, everything meshfed reads and writes
// on the hub's API server.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1.AddToScheme(s))
	return s
}

// NewClient is a controller-runtime client of the hub's API server with Scheme.
func NewClient(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: Scheme()})
}
