package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/netlink"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
)

// Options configure the demo.
type Options struct {
	Dir           string
	MeshfedBinary string
	// Meshfedctl is the meshfedctl binary the demo runs `policy explain` with.
	// Default: this executable.
	Meshfedctl string
	// EchoCommand runs the demo's gRPC echo backends; `--serve ADDR=ID`,
	// `--cert-dir DIR`, `--xds-server ADDR` and `--locality REGION/ZONE` are
	// appended. Default: Meshfedctl's `dev echo`.
	EchoCommand []string
	Out         io.Writer
	// Requests per phase. Default 200.
	Requests int
}

const target = "cart.shop.svc.clusterset.local:8080"

// Run plays the demo and returns an error if a steady phase had failures or traffic
// went somewhere it should not.
func Run(ctx context.Context, opts Options) error {
	if opts.Meshfedctl == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		opts.Meshfedctl = self
	}
	if len(opts.EchoCommand) == 0 {
		opts.EchoCommand = []string{opts.Meshfedctl, "dev", "echo"}
	}
	if os.Getenv("GRPC_EXPERIMENTAL_XDS_SNI") != "true" {
		return errors.New("run with GRPC_EXPERIMENTAL_XDS_SNI=true in the environment (make demo does): grpc-go sends the SNI east-west gateways route on only then")
	}
	if opts.Requests == 0 {
		opts.Requests = 200
	}
	say := func(format string, args ...any) { fmt.Fprintf(opts.Out, format+"\n", args...) }
	say("== starting a sandbox: hub with the mesh CA, alpha and beta in us-east, gamma in eu-west on a network of its own")
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: opts.Dir, Clusters: 3, MeshfedBinary: opts.MeshfedBinary,
		SeparateNetwork: true, MTLS: true, MeshCA: true, WorkloadIdentities: []string{"shop/frontend", "shop/cart"},
		Progress: opts.Out})
	if err != nil {
		return err
	}
	defer s.Down()
	say("== waiting for workload certificates (mesh root in cert-manager → each cluster's intermediate → workloads)")
	for _, c := range s.Clusters {
		if err := waitFile(ctx, filepath.Join(c.CertDir, "shop", "cart", "tls.crt")); err != nil {
			return err
		}
	}
	alpha, gamma := s.Cluster("alpha"), s.Cluster("gamma")
	if err := waitFile(ctx, filepath.Join(alpha.CertDir, "shop", "frontend", "tls.crt")); err != nil {
		return err
	}

	host, err := testnet.NewHost(6, filepath.Join(opts.Dir, "logs"))
	if err != nil {
		return err
	}
	defer host.Close()
	// The backends are proxyless gRPC xDS servers of their cluster's agent: its
	// Listener gives them their mTLS and the authorization rules of act two. They
	// reach the agent from their network namespace through a relay on the host's side
	// of its link.
	gw := host.Addr(0).As4()
	gw[3] = 1
	relays := map[string]string{}
	for _, c := range s.Clusters {
		l, err := netlink.Listen(net.JoinHostPort(netip.AddrFrom4(gw).String(), "0"), c.XDSAddr)
		if err != nil {
			return err
		}
		defer l.Close()
		relays[c.Name] = l.Addr()
	}
	backends := map[string]*proc.Process{}
	slices_ := map[string]*discoveryv1.EndpointSlice{}
	start := func(c *sandbox.Cluster, i int) error {
		var serve []string
		for j := range 2 {
			addr := host.Addr(2*i + j).String()
			serve = append(serve, "--serve", net.JoinHostPort(addr, "8080")+"="+c.Name+"/"+c.Zones[0])
		}
		p, err := host.Run(c.Name+"-cart", slices.Concat(opts.EchoCommand, []string{"--cert-dir",
			filepath.Join(c.CertDir, "shop", "cart"), "--xds-server", relays[c.Name], "--locality", c.Region + "/" + c.Zones[0]}, serve))
		backends[c.Name] = p
		return err
	}
	for i, c := range s.Clusters {
		if err := start(c, i); err != nil {
			return err
		}
		sl, err := publish(ctx, c, []string{host.Addr(2 * i).String(), host.Addr(2*i + 1).String()})
		if err != nil {
			return err
		}
		slices_[c.Name] = sl
	}
	hub, err := s.HubClient()
	if err != nil {
		return err
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&v1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Spec: v1.FailoverPolicySpec{
			Failover:     []v1.FailoverRule{{From: v1.LocalitySelector{Cluster: "alpha"}, To: []v1.LocalitySelector{{Cluster: "gamma"}}}},
			FailbackHold: &metav1.Duration{Duration: 2 * time.Second},
		}},
		&v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}, Spec: v1.GlobalServiceSpec{
			Ports:             []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}},
			FailoverPolicyRef: &v1.LocalObjectReference{Name: "cart"},
		}},
	} {
		if err := hub.Create(ctx, o); err != nil {
			return err
		}
	}
	say("== shop/cart runs in alpha, beta and gamma; policy: alpha fails over to gamma first")

	conn, err := meshClient(alpha, filepath.Join(alpha.CertDir, "shop", "frontend"))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := until(ctx, func() bool { t := send(ctx, conn, 10); return t.failed == 0 && t.landed["alpha/"+alpha.Zones[0]] == 10 }); err != nil {
		return fmt.Errorf("traffic never settled on alpha: %w", err)
	}
	// Converged: alpha's agent has every cluster's copies healthy, none held back or
	// demoted (a locality that just became healthy is held for the failback hold).
	if err := until(ctx, func() bool {
		out := explain(ctx, alpha)
		return strings.Contains(out, "gamma") && strings.Contains(out, "beta") &&
			!strings.Contains(out, "excluded") && !strings.Contains(out, "demoted")
	}); err != nil {
		return fmt.Errorf("alpha's agent never had every cluster's copies healthy: %w\n%s", err, explain(ctx, alpha))
	}

	var phases []*phase
	// run sends n calls over conn while during runs; check says what is wrong with
	// the phase ("" if nothing; nil for a phase in which failures are expected).
	run := func(name string, conn *grpc.ClientConn, n int, check func(*phase) string, during func()) {
		p := &phase{name: name, calls: n}
		done := make(chan struct{})
		go func() {
			if during != nil {
				during()
			}
			close(done)
		}()
		p.tally = send(ctx, conn, n)
		<-done
		phases = append(phases, p)
		denied := ""
		if p.denied > 0 {
			denied = fmt.Sprintf(", %d denied", p.denied)
		}
		say("   %-34s %v, %d failed%s", name, p.landed, p.failed, denied)
		if check != nil {
			p.problem = check(p)
		}
	}
	// steadyIn: every call lands in cluster, none fails.
	steadyIn := func(cluster string) func(*phase) string {
		return func(p *phase) string {
			if p.failed > 0 || p.denied > 0 || p.byCluster()[cluster] != p.calls {
				say("%s", explain(ctx, alpha))
				return "calls failed or landed outside " + cluster
			}
			return ""
		}
	}
	setReady := func(c string, ready bool) {
		sl := slices_[c]
		for i := range sl.Endpoints {
			sl.Endpoints[i].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(!ready)}
		}
		kube := kubernetes.NewForConfigOrDie(s.Cluster(c).Config())
		if updated, err := kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, sl, metav1.UpdateOptions{}); err == nil {
			slices_[c] = updated
		}
	}

	say("== 1. steady: the client in alpha stays in its zone")
	run("steady, local", conn, opts.Requests, steadyIn("alpha"), nil)
	say("== 2. alpha's copies fail (readiness off, then the processes die)")
	run("failover", conn, opts.Requests, nil, func() {
		setReady("alpha", false)
		time.Sleep(500 * time.Millisecond) // the kubelet marks pods unready before they are gone
		backends["alpha"].Stop(5 * time.Second)
	})
	run("steady, through gamma's gateway", conn, opts.Requests, steadyIn("gamma"), nil)
	say("== 3. alpha's copies come back")
	run("failback", conn, opts.Requests, nil, func() {
		if err := start(alpha, 0); err == nil {
			time.Sleep(time.Second)
			setReady("alpha", true)
		}
	})
	_ = until(ctx, func() bool { t := send(ctx, conn, 10); return t.landed["alpha/"+alpha.Zones[0]] == 10 })
	run("steady, back home", conn, opts.Requests, steadyIn("alpha"), nil)

	if err := policyAct(ctx, opts, s, hub, conn, run, steadyIn, say); err != nil {
		return err
	}

	w := tabwriter.NewWriter(opts.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nPHASE\tCALLS\tALPHA\tBETA\tGAMMA\tFAILED\tDENIED\n")
	var bad []string
	for _, p := range phases {
		by := p.byCluster()
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p.name, p.calls, by["alpha"], by["beta"], by[gamma.Name], p.failed, p.denied)
		if p.problem != "" {
			bad = append(bad, p.name+": "+p.problem)
		}
	}
	w.Flush()
	if len(bad) > 0 {
		return fmt.Errorf("phases not as the policies say: %s", strings.Join(bad, "; "))
	}
	say("\nEvery phase as the policies say: no failed call in a steady phase, about %d%% of the calls in the canary,\n"+
		"every call of beta's frontend refused while the rule held and none of alpha's.", canaryWeight)
	return nil
}

// phase is one row of the demo's table.
type phase struct {
	name  string
	calls int
	tally
	// problem is why the phase is not what the policies say; "" if it is.
	problem string
}

// tally counts calls: where they landed ("cluster/zone" → count), how many servers
// refused with PERMISSION_DENIED, and how many failed otherwise.
type tally struct {
	landed         map[string]int
	denied, failed int
}

// byCluster is landed per cluster.
func (t tally) byCluster() map[string]int {
	by := map[string]int{}
	for id, n := range t.landed {
		cluster, _, _ := strings.Cut(id, "/")
		by[cluster] += n
	}
	return by
}

// explain is what alpha's agent says of cart for the client's zone: why traffic went
// where it did.
func explain(ctx context.Context, c *sandbox.Cluster) string {
	u := "http://" + c.DebugAddr + "/debug/explain?service=shop/cart&zone=" + url.QueryEscape(c.Zones[0])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}

func publish(ctx context.Context, c *sandbox.Cluster, addrs []string) (*discoveryv1.EndpointSlice, error) {
	kube, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	// The backends hold shop/cart's certificate: clients accept exactly the accounts
	// a cluster publishes for the service (no pods here to read them from).
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart",
		Annotations: map[string]string{v1.ServiceAccountsAnnotation: "cart"}}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "cart"},
		Ports:    []corev1.ServicePort{{Name: "grpc", Port: 8080, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: "cart", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Zone: ptr.To(c.Zones[0]),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}})
	}
	return kube.DiscoveryV1().EndpointSlices("shop").Create(ctx, sl, metav1.CreateOptions{})
}

// meshClient is a proxyless gRPC client of alpha's agent, in alpha's first zone, with
// xDS credentials from the workload certificates in dir.
func meshClient(c *sandbox.Cluster, dir string) (*grpc.ClientConn, error) {
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": %s, "server_features": ["xds_v3"]}],
  "node": {"id": "demo-client-%s", "locality": {"region": %q, "zone": %q}},
  "certificate_providers": {"meshfed": {"plugin_name": "file_watcher", "config": {
    "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "10s"}}}
}`, c.XDSAddr, c.XDSChannelCreds(), c.Name, c.Region, c.Zones[0], filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"))
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		return nil, err
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(creds))
}

// send makes n calls, one after the other, and counts where they landed.
func send(ctx context.Context, conn *grpc.ClientConn, n int) tally {
	t := tally{landed: map[string]int{}}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := echo.Call(cctx, conn)
		cancel()
		switch {
		case status.Code(err) == codes.PermissionDenied:
			t.denied++
		case err != nil:
			t.failed++
		default:
			t.landed[id]++
		}
		time.Sleep(5 * time.Millisecond) // a steady trickle, so phases span the changes
	}
	return t
}

func until(ctx context.Context, ok func() bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("timed out")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func waitFile(ctx context.Context, path string) error {
	return until(ctx, func() bool { _, err := os.Stat(path); return err == nil })
}
