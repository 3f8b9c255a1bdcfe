package register

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/deploy"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

// DefaultCredentialLifetime is how long an agent's etcd certificate lives.
const DefaultCredentialLifetime = 30 * 24 * time.Hour

// Options say which cluster to register, where it is, and how to reach both API
// servers.
type Options struct {
	Cluster  string
	Region   string
	Zones    []string
	Network  string // default "default"
	Gateways []v1.GatewayAddress
	// AddressRanges are the CIDRs the cluster's endpoints may use (MeshCluster
	// spec.addressRanges). Empty: discovered from the member cluster
	// (DiscoverAddressRanges) for a new registration, kept as they are for an existing
	// one. AnyAddress alone: none, any routable address.
	AddressRanges []string

	Hub    *rest.Config
	Member *rest.Config

	// CredentialLifetime of the agent's etcd certificate. Default
	// DefaultCredentialLifetime; the hub caps it.
	CredentialLifetime time.Duration
	// Timeout bounds each wait (reachability, signing, registration). Default 60s.
	Timeout time.Duration
	// Progress receives one line per step. Default: discard.
	Progress io.Writer
}

// AnyAddress, as the only address range, registers a cluster without ranges: its
// endpoints may use any routable address.
const AnyAddress = "any"

var (
	labelRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	localityRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

func (o *Options) validate() error {
	if len(o.Cluster) > 63 || !labelRE.MatchString(o.Cluster) {
		return fmt.Errorf("cluster name %q: use lower-case letters, digits and '-', at most 63 characters (a DNS label)", o.Cluster)
	}
	if len(o.Region) > 63 || !localityRE.MatchString(o.Region) {
		return fmt.Errorf("region %q: use a topology.kubernetes.io/region value: lower-case letters, digits, '-' and '.', e.g. eu-west-1", o.Region)
	}
	if len(o.Zones) == 0 {
		return fmt.Errorf("cluster %q: give at least one zone (--zones), e.g. %s-a", o.Cluster, o.Region)
	}
	for _, z := range o.Zones {
		if len(z) > 63 || !localityRE.MatchString(z) {
			return fmt.Errorf("zone %q: use a topology.kubernetes.io/zone value: lower-case letters, digits, '-' and '.'", z)
		}
	}
	if o.Network == "" {
		o.Network = v1.DefaultNetwork
	}
	if len(o.Network) > 63 || !labelRE.MatchString(o.Network) {
		return fmt.Errorf("network %q: use a DNS label", o.Network)
	}
	if len(o.AddressRanges) == 1 && o.AddressRanges[0] == AnyAddress {
		o.AddressRanges = []string{}
	}
	for _, r := range o.AddressRanges {
		p, err := netip.ParsePrefix(r)
		if err != nil || p != p.Masked() {
			return fmt.Errorf("address range %q: use CIDR notation with no host bits set, e.g. 10.244.0.0/16 (or %q alone for any routable address)", r, AnyAddress)
		}
	}
	if o.Hub == nil || o.Member == nil {
		return fmt.Errorf("cluster %q: both the hub's and the member cluster's kubeconfig are required", o.Cluster)
	}
	if o.CredentialLifetime == 0 {
		o.CredentialLifetime = DefaultCredentialLifetime
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// reachable fails with a clear message if the API server does not answer in time.
func reachable(ctx context.Context, cfg *rest.Config, what string, timeout time.Duration) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.Timeout = timeout
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := kube.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("cannot reach the %s API server at %s: %w (check the kubeconfig)", what, cfg.Host, err)
	}
	return kubernetes.NewForConfig(cfg)
}

// Register joins the cluster to the federation. See the package doc.
func Register(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }

	hubKube, err := reachable(ctx, opts.Hub, "hub", opts.Timeout)
	if err != nil {
		return err
	}
	memberKube, err := reachable(ctx, opts.Member, "member cluster "+opts.Cluster, opts.Timeout)
	if err != nil {
		return err
	}
	info, err := hubinfo.Read(ctx, hubKube)
	if err != nil {
		return err
	}
	hub, err := hubinfo.NewClient(opts.Hub)
	if err != nil {
		return err
	}

	discovered := opts.AddressRanges == nil
	if discovered {
		d, err := DiscoverAddressRanges(ctx, memberKube)
		if err != nil {
			return fmt.Errorf("cluster %q: discover address ranges: %w", opts.Cluster, err)
		}
		opts.AddressRanges = d.Ranges
		for _, n := range d.Notes {
			say("%s: address ranges: %s", opts.Cluster, n)
		}
		if len(d.Ranges) == 0 {
			say("%s: WARNING: found no address ranges: the cluster's endpoints may use any routable address. "+
				"Give --address-ranges (its pod and service CIDRs) so that a compromised cluster cannot claim other addresses", opts.Cluster)
		} else {
			say("%s: address ranges found: %s (check them; --address-ranges sets them)", opts.Cluster, strings.Join(d.Ranges, ","))
		}
	}
	registration, gen, err := ensureMeshCluster(ctx, hub, &opts, discovered)
	if err != nil {
		return err
	}
	say("%s: MeshCluster on the hub, registration %s", opts.Cluster, registration)

	apply, err := kubeapply.New(opts.Member)
	if err != nil {
		return err
	}
	objs, err := agentManifests()
	if err != nil {
		return err
	}
	if err := apply.Apply(ctx, objs); err != nil {
		return fmt.Errorf("install the agent's namespace and RBAC in %s: %w", opts.Cluster, err)
	}
	say("%s: agent namespace and RBAC in the member cluster", opts.Cluster)

	// The hub makes the registration's etcd user before the signer may sign for it.
	if err := waitRegistered(ctx, hub, opts.Cluster, gen, opts.Timeout); err != nil {
		return err
	}
	renewed, err := ensureCredentials(ctx, hubKube, memberKube, info, registration, &opts)
	if err != nil {
		return err
	}
	if renewed {
		say("%s: etcd credentials signed by the hub and stored in %s/%s", opts.Cluster, hubinfo.Namespace, agentcreds.SecretName)
	} else {
		say("%s: etcd credentials present and fresh", opts.Cluster)
	}
	say("%s: registered", opts.Cluster)
	return nil
}

// waitRegistered waits until the hub reports the cluster Registered for generation
// gen of its MeshCluster (or a later one).
func waitRegistered(ctx context.Context, hub client.Client, cluster string, gen int64, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		mc := &v1.MeshCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: cluster}, mc); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionRegistered)
		return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration >= gen, nil
	})
	if err != nil {
		return fmt.Errorf("cluster %q: the hub did not report it Registered within %s: is `meshfed hub` running? %w", cluster, timeout, err)
	}
	return nil
}

// ensureMeshCluster creates the cluster's MeshCluster, with a new registration, or
// checks an existing one's settings. An existing cluster without a valid registration
// (revoked, or registered before registrations existed) gets a new one, which makes
// every certificate of its earlier registrations useless. Address ranges differ from
// the rest: they change as a cluster grows, so ranges given explicitly replace the
// existing ones, and discovered ones (discovered) never do. It returns the
// registration and the MeshCluster's generation.
func ensureMeshCluster(ctx context.Context, hub client.Client, opts *Options, discovered bool) (string, int64, error) {
	want := v1.MeshClusterSpec{Region: v1.LocalityName(opts.Region), Network: opts.Network, Gateways: opts.Gateways}
	for _, r := range opts.AddressRanges {
		want.AddressRanges = append(want.AddressRanges, v1.CIDR(r))
	}
	for _, z := range opts.Zones {
		want.Zones = append(want.Zones, v1.LocalityName(z))
	}
	for i := range want.Gateways {
		if want.Gateways[i].Port == 0 {
			want.Gateways[i].Port = v1.DefaultGatewayPort
		}
	}
	mc := &v1.MeshCluster{}
	err := hub.Get(ctx, client.ObjectKey{Name: opts.Cluster}, mc)
	switch {
	case apierrors.IsNotFound(err):
		want.Registration = hubinfo.NewRegistration()
		mc = &v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: opts.Cluster}, Spec: want}
		if err := hub.Create(ctx, mc); err != nil {
			return "", 0, fmt.Errorf("create MeshCluster %q: %w", opts.Cluster, err)
		}
		return mc.Spec.Registration, mc.Generation, nil
	case err != nil:
		return "", 0, fmt.Errorf("get MeshCluster %q: %w", opts.Cluster, err)
	case !mc.DeletionTimestamp.IsZero():
		return "", 0, fmt.Errorf("cluster %q is being unregistered; wait until its MeshCluster is gone, then register again", opts.Cluster)
	}
	have := mc.Spec
	if have.Region != want.Region || have.Network != want.Network || !slices.Equal(have.Zones, want.Zones) ||
		!slices.Equal(have.Gateways, want.Gateways) {
		return "", 0, fmt.Errorf("cluster %q is already registered with region %s, zones %v, network %s, gateways %v; "+
			"register it with the same settings, or unregister it first", opts.Cluster, have.Region, have.Zones, have.Network, have.Gateways)
	}
	newRanges := !slices.Equal(have.AddressRanges, want.AddressRanges)
	if newRanges && discovered {
		fmt.Fprintf(opts.Progress, "%s: keeping the registered address ranges %v (--address-ranges replaces them)\n", opts.Cluster, have.AddressRanges)
		newRanges = false
	}
	reregister := have.Registration == "" || have.Revoked
	if !newRanges && !reregister {
		return have.Registration, mc.Generation, nil
	}
	registration := have.Registration
	if reregister {
		registration = hubinfo.NewRegistration()
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := hub.Get(ctx, client.ObjectKey{Name: opts.Cluster}, mc); err != nil {
			return err
		}
		if newRanges {
			mc.Spec.AddressRanges = want.AddressRanges
		}
		if reregister {
			mc.Spec.Registration, mc.Spec.Revoked = registration, false
		}
		return hub.Update(ctx, mc)
	})
	if err != nil {
		return "", 0, fmt.Errorf("update MeshCluster %q: %w", opts.Cluster, err)
	}
	if newRanges {
		fmt.Fprintf(opts.Progress, "%s: address ranges changed from %v to %v\n", opts.Cluster, have.AddressRanges, want.AddressRanges)
	}
	return registration, mc.Generation, nil
}

func agentManifests() ([]*unstructured.Unstructured, error) {
	var docs [][]byte
	for _, name := range []string{"agent/namespace.yaml", "agent/rbac.yaml"} {
		data, err := fs.ReadFile(deploy.Agent, name)
		if err != nil {
			return nil, err
		}
		docs = append(docs, data)
	}
	return kubeapply.Decode(docs...)
}

// ensureCredentials makes sure the member cluster holds fresh etcd credentials for the
// hub's current endpoints and CA. It reports whether it signed new ones.
func ensureCredentials(ctx context.Context, hub, member kubernetes.Interface, info hubinfo.Info, registration string, opts *Options) (bool, error) {
	user := hubinfo.EtcdUser(opts.Cluster, registration)
	cur, err := agentcreds.Load(ctx, member, hubinfo.Namespace)
	if err == nil && cur.Cluster == opts.Cluster && cur.User() == user && cur.Fresh(time.Now()) &&
		string(cur.Etcd.CA) == string(info.EtcdCA) && slices.Equal(cur.Etcd.Endpoints, info.EtcdEndpoints) {
		return false, nil
	}
	csrPEM, keyPEM, err := pki.NewCSR(user)
	if err != nil {
		return false, err
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "meshfed-etcd-" + opts.Cluster + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           csrPEM,
			SignerName:        hubinfo.SignerName,
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			ExpirationSeconds: ptr.To(int32(opts.CredentialLifetime / time.Second)),
		},
	}
	csrs := hub.CertificatesV1().CertificateSigningRequests()
	csr, err = csrs.Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("request etcd credentials for %q: %w", opts.Cluster, err)
	}
	defer csrs.Delete(context.WithoutCancel(ctx), csr.Name, metav1.DeleteOptions{}) //nolint:errcheck // best effort: the certificate is public

	var cert []byte
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, opts.Timeout, true, func(ctx context.Context) (bool, error) {
		got, err := csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, c := range got.Status.Conditions {
			if (c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed) && c.Status == corev1.ConditionTrue {
				return false, fmt.Errorf("the hub refused the etcd credentials of %q: %s", opts.Cluster, c.Message)
			}
		}
		cert = got.Status.Certificate
		return len(cert) > 0, nil
	})
	if err != nil {
		return false, fmt.Errorf("cluster %q: no etcd certificate from the hub's signer within %s: %w", opts.Cluster, opts.Timeout, err)
	}
	creds := agentcreds.Credentials{Cluster: opts.Cluster, Etcd: etcdconn.Credentials{
		Endpoints: info.EtcdEndpoints, CA: info.EtcdCA, Cert: cert, Key: keyPEM,
	}}
	secret := creds.Secret(hubinfo.Namespace)
	secrets := member.CoreV1().Secrets(hubinfo.Namespace)
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("store etcd credentials in %s: %w", opts.Cluster, err)
		}
	} else if err != nil {
		return false, fmt.Errorf("store etcd credentials in %s: %w", opts.Cluster, err)
	}
	return true, nil
}

// UnregisterOptions say which cluster to remove.
type UnregisterOptions struct {
	Cluster string
	Hub     *rest.Config
	// Member, if set, also has the agent's objects removed from the member cluster.
	Member   *rest.Config
	Timeout  time.Duration
	Progress io.Writer
}

// Unregister removes the cluster from the federation. See the package doc.
func Unregister(ctx context.Context, opts UnregisterOptions) error {
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	hub, err := hubinfo.NewClient(opts.Hub)
	if err != nil {
		return err
	}
	mc := &v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: opts.Cluster}}
	if err := hub.Delete(ctx, mc); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete MeshCluster %q: %w", opts.Cluster, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, opts.Timeout, true, func(ctx context.Context) (bool, error) {
		err := hub.Get(ctx, client.ObjectKeyFromObject(mc), &v1.MeshCluster{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("cluster %q: the hub did not finish removing it within %s: is `meshfed hub` running? %w", opts.Cluster, opts.Timeout, err)
	}
	fmt.Fprintf(opts.Progress, "%s: removed from the hub (MeshCluster, etcd user and keys)\n", opts.Cluster)
	if opts.Member == nil {
		return nil
	}
	apply, err := kubeapply.New(opts.Member)
	if err != nil {
		return err
	}
	objs, err := agentManifests()
	if err != nil {
		return err
	}
	secret, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: agentcreds.SecretName, Namespace: hubinfo.Namespace},
	})
	if err != nil {
		return err
	}
	objs = append(objs, &unstructured.Unstructured{Object: secret})
	if err := apply.Delete(ctx, objs); err != nil {
		return fmt.Errorf("remove the agent's objects from %s: %w", opts.Cluster, err)
	}
	fmt.Fprintf(opts.Progress, "%s: agent credentials, RBAC and namespace removed from the member cluster\n", opts.Cluster)
	return nil
}

// RevokeOptions say which cluster to revoke.
type RevokeOptions struct {
	Cluster  string
	Hub      *rest.Config
	Timeout  time.Duration
	Progress io.Writer
}

// Revoke cuts the cluster off the federation and keeps its MeshCluster: it marks it
// revoked and waits until the hub reports it (Registered False, reason Revoked), by
// which time the hub has deleted the cluster's etcd user, so that etcd refuses every
// certificate of its registration, and its records. Register makes it a member again,
// with new credentials. Revoking a revoked cluster changes nothing.
func Revoke(ctx context.Context, opts RevokeOptions) error {
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	hub, err := hubinfo.NewClient(opts.Hub)
	if err != nil {
		return err
	}
	mc := &v1.MeshCluster{}
	if err := hub.Get(ctx, client.ObjectKey{Name: opts.Cluster}, mc); apierrors.IsNotFound(err) {
		return fmt.Errorf("cluster %q is not registered (no MeshCluster): nothing to revoke", opts.Cluster)
	} else if err != nil {
		return fmt.Errorf("get MeshCluster %q: %w", opts.Cluster, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := hub.Get(ctx, client.ObjectKey{Name: opts.Cluster}, mc); err != nil {
			return err
		}
		if mc.Spec.Revoked {
			return nil
		}
		mc.Spec.Revoked = true
		return hub.Update(ctx, mc)
	})
	if err != nil {
		return fmt.Errorf("revoke MeshCluster %q: %w", opts.Cluster, err)
	}
	gen := mc.Generation
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if err := hub.Get(ctx, client.ObjectKey{Name: opts.Cluster}, mc); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionRegistered)
		return c != nil && c.Reason == v1.ReasonRevoked && c.ObservedGeneration >= gen, nil
	})
	if err != nil {
		return fmt.Errorf("cluster %q: the hub did not report it revoked within %s: is `meshfed hub` running? %w", opts.Cluster, opts.Timeout, err)
	}
	fmt.Fprintf(opts.Progress, "%s: revoked: etcd refuses its credentials and its records are deleted; "+
		"`meshfedctl cluster register` registers it again with new ones\n", opts.Cluster)
	return nil
}
