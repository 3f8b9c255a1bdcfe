package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/register"
	"github.com/meshfed/meshfed/internal/dev/chart"
	"github.com/meshfed/meshfed/internal/dev/etcdcluster"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/netlink"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

// Options configure a sandbox. Dir and MeshfedBinary are required.
type Options struct {
	// Dir holds everything: kubeconfigs, data, logs and sandbox.json.
	Dir string
	// Clusters is the number of member clusters. Default 3.
	Clusters int
	// MeshfedBinary is the `meshfed` executable to run the hub and agents with.
	MeshfedBinary string
	// Progress receives a line per step. Default: discard.
	Progress io.Writer
	// Timeout bounds each wait. Default 3 minutes: a 2-core machine starting four
	// control planes at once is slow.
	Timeout time.Duration
	// HeartbeatTTL is the agents' heartbeat lease. Default: the agent's default.
	HeartbeatTTL time.Duration
	// ViewCheckInterval is how often agents compare their view with the hub's store.
	// Default: the agent's default.
	ViewCheckInterval time.Duration
	// SeparateNetwork puts the last member cluster on a network of its own, so that
	// traffic to it goes through its east-west gateway.
	SeparateNetwork bool
	// MTLS installs the agents with agent.mtls (--mtls): proxies get mTLS settings and
	// need the "meshfed" certificate provider in their bootstrap, and the agents serve
	// xDS with mTLS only. The sandbox issues XDSClientIdentity and GatewayIdentity in
	// every cluster, for its clients and gateways, and Up waits until each agent
	// serves xDS over TLS. It needs MeshCA.
	MTLS bool
	// MeshCA installs the hub with hub.meshCA (--mesh-ca): cert-manager's controllers
	// and the mesh root.
	MeshCA bool
	// WorkloadIdentities ("<ns>/<sa>") get certificates from each cluster's
	// intermediate, in Cluster.CertDir.
	WorkloadIdentities []string

	// EtcdMembers runs the hub over an external etcd cluster of this many members
	// (package etcdcluster: real processes, client and peer mTLS) instead of its
	// embedded etcd; agents are given every member's endpoint. 0: the embedded etcd.
	EtcdMembers int
	// HubReplicas runs this many hub processes with --leader-elect, the documented HA
	// hub; more than one needs EtcdMembers. 0 or 1: one hub without leader election.
	HubReplicas int
	// Links puts each agent's connections to the hub's etcd through links of its own
	// (package netlink) that Partition cuts and Heal restores: a cluster cut off
	// from the hub while the others are not.
	Links bool
	// HubLeaseDuration is the replicas' leader Lease: a killed leader is replaced
	// within about this long. Default 6s, short enough for tests and long enough for a
	// loaded 2-core machine's API server to answer renewals in time.
	HubLeaseDuration time.Duration
	// Short lifetimes, for tests that wait through renewals (0: the components'
	// defaults): agents' etcd client certificates (hub --agent-cert-lifetime), the
	// hub's own etcd certificates (--etcd-cert-lifetime) and workload certificates
	// (agent --workload-cert-lifetime).
	AgentCertLifetime, EtcdCertLifetime, WorkloadCertLifetime time.Duration
}

// ha reports whether the hub runs as leader-elected replicas.
func (o *Options) ha() bool { return o.HubReplicas > 1 }

// Cluster is one member cluster of a running sandbox.
type Cluster struct {
	Name       string   `json:"name"`
	Region     string   `json:"region"`
	Zones      []string `json:"zones"`
	Network    string   `json:"network"`
	Kubeconfig string   `json:"kubeconfig"`
	// AgentAddr serves the agent's /healthz and /readyz (the chart's port 9092),
	// MetricsAddr its /metrics (9093), DebugAddr its /debug/view and /debug/explain
	// (9094, on the pod's loopback in a real cluster).
	AgentAddr   string `json:"agentAddr"`
	MetricsAddr string `json:"metricsAddr"`
	DebugAddr   string `json:"debugAddr"`
	// XDSAddr is the agent's xDS server, for the cluster's proxies.
	XDSAddr  string `json:"xdsAddr"`
	AgentPID int    `json:"agentPID"`
	// GatewayAddr is the cluster's east-west gateway, as registered in its MeshCluster.
	GatewayAddr string `json:"gatewayAddr"`
	// CertDir holds workload certificates the agent issues, <ns>/<sa>/{tls.crt,tls.key,ca.crt}.
	CertDir string `json:"certDir,omitempty"`
	// XDSCertDir is the workload certificate xDS clients of the sandbox present to the
	// agent (XDSClientIdentity) when its xDS requires mTLS (Options.MTLS); empty:
	// the agent serves plaintext xDS on loopback. XDSChannelCreds and XDSCredentials
	// are what bootstraps and raw ADS clients use.
	XDSCertDir string `json:"xdsCertDir,omitempty"`
	GatewayPID int    `json:"gatewayPID"`
	// GatewayHealthAddr serves the gateway's /healthz, /readyz and /metrics.
	GatewayHealthAddr string `json:"gatewayHealthAddr"`

	cp      *localkube.ControlPlane
	objs    []*unstructured.Unstructured // the chart's member release (agent and gateway)
	agent   *proc.Process
	gateway *proc.Process
	dir     string
	links   []*netlink.Link // with Options.Links: to each of the hub's etcd endpoints
}

// Config is the member cluster's administrator config.
func (c *Cluster) Config() *rest.Config { return c.cp.Config }

// Hub is the sandbox's hub: one process, or leader-elected replicas.
type Hub struct {
	Kubeconfig string   `json:"kubeconfig"`
	Etcd       []string `json:"etcdEndpoints"`
	// MetricsAddr and PID are the first replica's.
	MetricsAddr string `json:"metricsAddr"`
	PID         int    `json:"pid"`
	// Replicas are the hub processes: one, or Options.HubReplicas.
	Replicas []*HubReplica `json:"replicas"`

	cp   *localkube.ControlPlane
	etcd *etcdcluster.Cluster // nil with the embedded etcd
	dir  string
	pod  chart.PodOptions // what every replica shares
	objs []*unstructured.Unstructured
}

// HubReplica is one hub process. Its Name is its identity in the leader Lease.
type HubReplica struct {
	Name        string `json:"name"`
	MetricsAddr string `json:"metricsAddr"`
	HealthAddr  string `json:"healthAddr"`
	// ConsoleAddr serves the hub's web console (--console-addr), on loopback, with
	// every agent's explain (--console-agents).
	ConsoleAddr string `json:"consoleAddr"`
	PID         int    `json:"pid"`

	process *proc.Process
	pod     *chart.Pod
}

// Sandbox is a running federation. Its JSON form is sandbox.json.
type Sandbox struct {
	Dir      string     `json:"dir"`
	PID      int        `json:"pid"` // the process that owns everything
	Hub      *Hub       `json:"hub"`
	Clusters []*Cluster `json:"clusters"`

	opts     Options
	stopOnce sync.Once
	logMu    sync.Mutex
	logFrom  map[string]int64 // log path → its size when its process last started
}

// File is the name of the sandbox description in Options.Dir.
const File = "sandbox.json"

// Up starts a sandbox and waits until every cluster is Connected and Synced. On error
// nothing is left running.
func Up(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	if opts.Clusters == 0 {
		opts.Clusters = 3
	}
	if opts.Clusters < 1 || opts.Clusters > 20 {
		return nil, fmt.Errorf("sandbox: --clusters %d: use 1 to 20", opts.Clusters)
	}
	if opts.MTLS && !opts.MeshCA {
		return nil, fmt.Errorf("sandbox: MTLS needs MeshCA (the clusters' intermediates issue the certificates)")
	}
	if opts.HubReplicas > 1 && opts.EtcdMembers == 0 {
		return nil, fmt.Errorf("sandbox: %d hub replicas need an external etcd cluster (EtcdMembers)", opts.HubReplicas)
	}
	if opts.HubLeaseDuration == 0 {
		opts.HubLeaseDuration = 6 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if _, err := os.Stat(opts.MeshfedBinary); err != nil {
		return nil, fmt.Errorf("sandbox: meshfed binary: %w (build it with make build)", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	s := &Sandbox{Dir: dir, PID: os.Getpid(), opts: opts}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	// Every wait below (registration's too) ends at once when the API server refuses
	// one of the processes a request: the chart's RBAC lacks a rule.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			if err := s.refused(); err != nil {
				cancel(err)
				return
			}
		}
	}()
	defer func() {
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
	}()
	say := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }

	say("starting %d control planes (etcd + kube-apiserver each)...", opts.Clusters+1)
	start := time.Now()
	cpOpts := []localkube.Options{{Name: "hub", Dir: filepath.Join(dir, "hub", "kube"), InstallCRDs: true, StartTimeout: opts.Timeout}}
	for i := range opts.Clusters {
		c := layout(i)
		if opts.SeparateNetwork && i == opts.Clusters-1 && i > 0 {
			c.Network = "net-" + c.Name
		}
		c.dir = filepath.Join(dir, c.Name)
		s.Clusters = append(s.Clusters, c)
		cpOpts = append(cpOpts, localkube.Options{Name: c.Name, Dir: filepath.Join(c.dir, "kube"), InstallCRDs: true, StartTimeout: opts.Timeout})
	}
	cps, err := localkube.StartAll(ctx, cpOpts)
	if err != nil {
		return nil, err
	}
	s.Hub = &Hub{cp: cps[0], dir: filepath.Join(dir, "hub"), Kubeconfig: filepath.Join(dir, "hub.kubeconfig")}
	if err := localkube.WriteKubeconfig(s.Hub.Kubeconfig, "hub", s.Hub.cp.Config); err != nil {
		return nil, err
	}
	for i, c := range s.Clusters {
		c.cp = cps[i+1]
		c.Kubeconfig = filepath.Join(dir, c.Name+".kubeconfig")
		if err := localkube.WriteKubeconfig(c.Kubeconfig, c.Name, c.cp.Config); err != nil {
			return nil, err
		}
	}
	say("control planes ready in %s", time.Since(start).Round(100*time.Millisecond))

	if opts.EtcdMembers > 0 {
		say("starting an etcd cluster of %d members...", opts.EtcdMembers)
		s.Hub.etcd, err = etcdcluster.Start(ctx, etcdcluster.Options{Dir: filepath.Join(s.Hub.dir, "etcd-cluster"),
			Members: opts.EtcdMembers, Timeout: opts.Timeout})
		if err != nil {
			return nil, err
		}
	}
	if err := s.startHub(ctx); err != nil {
		return nil, err
	}
	say("hub running: %d replica(s), etcd %s", len(s.Hub.Replicas), strings.Join(s.Hub.Etcd, ","))

	for _, c := range s.Clusters {
		ports, err := localkube.FreePorts(1)
		if err != nil {
			return nil, err
		}
		c.GatewayAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
		err = register.Register(ctx, register.Options{
			Cluster: c.Name, Region: c.Region, Zones: c.Zones, Network: c.Network,
			Gateways: []v1.GatewayAddress{{Address: "127.0.0.1", Port: int32(ports[0])}},
			// The range internal/dev/testnet gives its test hosts (10.250.x.0/24).
			AddressRanges: []string{testnet.Range},
			Hub:           s.Hub.cp.Config, Member: c.cp.Config, Timeout: opts.Timeout, Progress: opts.Progress,
		})
		if err != nil {
			return nil, err
		}
		// helm install of the member release: the agent and the east-west gateway.
		member := map[string]any{"hub": off, "agent": map[string]any{"replicas": 1, "mtls": opts.MTLS},
			"gateway": map[string]any{"replicas": 1}}
		if opts.MTLS {
			member["gateway"].(map[string]any)["xdsCertSecret"] = "meshfed-gateway-xds"
		}
		if c.objs, err = s.install(ctx, c.cp.Config, member); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if opts.Links {
			if err := s.link(ctx, c); err != nil {
				return nil, err
			}
		}
		if err := s.StartAgent(ctx, c.Name); err != nil {
			return nil, err
		}
		if err := s.StartGateway(ctx, c.Name); err != nil {
			return nil, err
		}
		say("%s: agent (%s) and east-west gateway (%s) running", c.Name, c.AgentAddr, c.GatewayAddr)
	}
	if err := s.WaitConnected(ctx, opts.Timeout); err != nil {
		return nil, err
	}
	say("every cluster Connected and Synced, %s after start", time.Since(start).Round(100*time.Millisecond))
	if opts.MTLS {
		for _, c := range s.Clusters {
			if err := waitXDS(ctx, c, opts.Timeout); err != nil {
				return nil, err
			}
		}
		say("every agent serves xDS over mTLS")
	}
	return s, s.write()
}

// layout names the i-th member cluster and places it: alpha and beta share region
// us-east, gamma has eu-west, and so on; every cluster has two zones of its own (as
// clusters in one region usually sit in different availability zones).
func layout(i int) *Cluster {
	names := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"}
	name := fmt.Sprintf("cluster-%d", i+1)
	if i < len(names) {
		name = names[i]
	}
	regions := []string{"us-east", "us-east", "eu-west"}
	region := regions[i%3]
	// The k-th cluster of a region takes that region's zones 2k and 2k+1.
	k := 0
	for j := range i {
		if regions[j%3] == region {
			k++
		}
	}
	zone := func(n int) string { return fmt.Sprintf("%s-%d%c", region, 1+n/26, 'a'+n%26) }
	return &Cluster{Name: name, Region: region, Zones: []string{zone(2 * k), zone(2*k + 1)}, Network: v1.DefaultNetwork}
}

// startHub installs the chart's hub release in the hub cluster (the rendered objects,
// applied: its namespace, ServiceAccount, RBAC, Services, Deployment) and runs each
// replica from the rendered Deployment (chart.NewPod): the chart's args and
// environment, authenticated as the chart's ServiceAccount, so the chart's RBAC is
// what the hub gets. The sandbox's own knobs (short lifetimes and leases) are the
// release's hub.extraArgs.
func (s *Sandbox) startHub(ctx context.Context) error {
	h := s.Hub
	replicas := max(s.opts.HubReplicas, 1)
	ports, err := localkube.FreePorts(1 + 3*replicas)
	if err != nil {
		return err
	}
	// The console asks the agents for explain tables: their addresses are chosen now
	// (StartAgent keeps them).
	agents := map[string]any{}
	for _, c := range s.Clusters {
		if c.AgentAddr == "" {
			if err := agentAddrs(c); err != nil {
				return err
			}
		}
		agents[c.Name] = "http://" + c.DebugAddr
	}
	hub := map[string]any{"enabled": true, "replicas": replicas, "meshCA": s.opts.MeshCA,
		"console": map[string]any{"enabled": true, "agents": agents}}
	var extra []string
	if d := s.opts.AgentCertLifetime; d > 0 {
		extra = append(extra, "--agent-cert-lifetime="+d.String())
	}
	if d := s.opts.EtcdCertLifetime; d > 0 {
		extra = append(extra, "--etcd-cert-lifetime="+d.String())
	}
	h.pod = chart.PodOptions{Admin: h.cp.Config, Volumes: map[string]string{}}
	if h.etcd == nil {
		h.Etcd = []string{"https://127.0.0.1:" + strconv.Itoa(ports[0])}
		// The agents dial the meshfed-hub Service's etcd port: here, the hub's.
		h.pod.Ports = map[int32]string{chartEtcdPort: "127.0.0.1:" + strconv.Itoa(ports[0])}
		h.pod.Services = map[string]string{"meshfed-hub." + hubinfo.Namespace + ":2379": h.pod.Ports[chartEtcdPort]}
	} else {
		// The documented HA setup: every member to every replica (and, through the hub
		// ConfigMap, to every agent); the agents' client CA is the cluster's client CA,
		// the same for every replica, so any replica signs certificates etcd accepts.
		h.Etcd = h.etcd.Endpoints()
		hub["etcd"] = map[string]any{"external": map[string]any{"endpoints": h.Etcd, "secretName": hubEtcdSecret}}
		if s.opts.ha() {
			lease := s.opts.HubLeaseDuration
			extra = append(extra, "--leader-elect-lease-duration="+lease.String(),
				"--leader-elect-renew-deadline="+(lease*2/3).String(), "--leader-elect-retry-period="+(lease/6).String())
		}
	}
	hub["extraArgs"] = extra
	h.objs, err = s.install(ctx, h.cp.Config, map[string]any{"hub": hub, "agent": off, "gateway": off})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if h.etcd != nil {
		if err := hubEtcdClient(ctx, h.cp.Config, h.etcd.Files); err != nil {
			return err
		}
	}
	for i := range replicas {
		r := &HubReplica{Name: "hub", MetricsAddr: "127.0.0.1:" + strconv.Itoa(ports[1+2*i]),
			HealthAddr: "127.0.0.1:" + strconv.Itoa(ports[2+2*i]), ConsoleAddr: "127.0.0.1:" + strconv.Itoa(ports[1+2*replicas+i])}
		if s.opts.ha() {
			r.Name = "hub-" + strconv.Itoa(i)
		}
		h.Replicas = append(h.Replicas, r)
	}
	h.MetricsAddr = h.Replicas[0].MetricsAddr
	return s.StartHub(ctx)
}

// The chart's ports (deploy/charts/meshfed): the sandbox gives each a local address.
const (
	chartEtcdPort       = 2379  // hub: embedded etcd
	chartHubMetricsPort = 9090  // hub: /metrics
	chartHubHealthPort  = 9091  // hub: /healthz, /readyz
	chartConsolePort    = 9095  // hub: the console, on the pod's loopback
	chartAgentHTTPPort  = 9092  // agent: /healthz, /readyz
	chartAgentMetrics   = 9093  // agent: /metrics
	chartAgentDebugPort = 9094  // agent: /debug, on the pod's loopback
	chartXDSPort        = 15010 // agent: xDS
	chartGatewayPort    = 15443 // gateway: SNI passthrough
	chartGatewayHTTP    = 15021 // gateway: /healthz, /readyz, /metrics
)

// hubEtcdSecret is the Secret the hub release names for its external etcd's client
// certificates (hub.etcd.external.secretName).
const hubEtcdSecret = "meshfed-hub-etcd"

var off = map[string]any{"enabled": false}

// install renders the chart with values (over the sandbox's common ones: the
// namespace, text logs) and applies every object to the cluster at admin, as `helm
// install` would; it returns the objects.
func (s *Sandbox) install(ctx context.Context, admin *rest.Config, values map[string]any) ([]*unstructured.Unstructured, error) {
	values["namespace"] = map[string]any{"create": true}
	values["logFormat"] = "text"
	dir, err := chart.FindDir()
	if err != nil {
		return nil, err
	}
	r, err := chart.Render(dir, values)
	if err != nil {
		return nil, fmt.Errorf("render the chart: %w", err)
	}
	objs, err := r.Objects()
	if err != nil {
		return nil, err
	}
	apply, err := kubeapply.New(admin)
	if err != nil {
		return nil, err
	}
	if err := apply.Apply(ctx, objs); err != nil {
		return nil, fmt.Errorf("apply the chart's objects: %w", err)
	}
	return objs, nil
}

// hubEtcdClient writes the Secret the hub release mounts for its external etcd: the
// etcd cluster's CA, its root user's client certificate and the client CA with which
// the hub signs agents' certificates.
func hubEtcdClient(ctx context.Context, admin *rest.Config, f etcdcluster.Files) error {
	data := map[string][]byte{}
	for key, path := range map[string]string{"ca.crt": f.CA, "tls.crt": f.RootCert, "tls.key": f.RootKey,
		"client-ca.crt": f.CA, "client-ca.key": f.CAKey} {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		data[key] = b
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubEtcdSecret, Namespace: hubinfo.Namespace}, Data: data}
	_, err := kubernetes.NewForConfigOrDie(admin).CoreV1().Secrets(hubinfo.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("hub etcd client Secret: %w", err)
	}
	return nil
}

// deployment finds the Deployment name among a release's objects.
func deployment(objs []*unstructured.Unstructured, name string) (*appsv1.Deployment, error) {
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == name {
			d := &appsv1.Deployment{}
			return d, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d)
		}
	}
	return nil, fmt.Errorf("the chart rendered no Deployment %s", name)
}

// StartHub starts every hub replica that is not running (again), one after the other
// so that the first one started leads, and waits until each is ready and the hub
// ConfigMap is published.
func (s *Sandbox) StartHub(ctx context.Context) error {
	for i, r := range s.Hub.Replicas {
		if r.process != nil && !r.process.Exited() {
			continue
		}
		if err := s.StartHubReplica(ctx, i); err != nil {
			return err
		}
	}
	kube, err := kubernetes.NewForConfig(s.Hub.cp.Config)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		for _, r := range s.Hub.Replicas {
			if r.process.Exited() {
				return false, r.process.Failure()
			}
		}
		_, err := hubinfo.Read(ctx, kube)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("hub did not publish its ConfigMap: %w", err)
	}
	return s.write()
}

// StartHubReplica starts hub replica i (again) from the chart's hub Deployment and
// waits until it is ready: its view of etcd synced, leader or not.
func (s *Sandbox) StartHubReplica(ctx context.Context, i int) error {
	r := s.Hub.Replicas[i]
	if r.pod == nil {
		deploy, err := deployment(s.Hub.objs, "meshfed-hub")
		if err != nil {
			return err
		}
		o := s.Hub.pod
		o.Name, o.Dir = r.Name, filepath.Join(s.Hub.dir, "pods", r.Name)
		o.Ports = maps.Clone(o.Ports)
		if o.Ports == nil {
			o.Ports = map[int32]string{}
		}
		o.Ports[chartHubMetricsPort], o.Ports[chartHubHealthPort], o.Ports[chartConsolePort] = r.MetricsAddr, r.HealthAddr, r.ConsoleAddr
		// The data volume outlives the process (a PersistentVolumeClaim in the chart).
		dataDir := filepath.Join(s.Hub.dir, "data")
		if s.opts.ha() {
			dataDir = filepath.Join(s.Hub.dir, r.Name)
		}
		o.Volumes = map[string]string{"data": dataDir}
		if r.pod, err = chart.NewPod(ctx, deploy, o); err != nil {
			return err
		}
	}
	p, err := s.start(r.pod, filepath.Join(s.Dir, "logs", r.Name+".log"))
	if err != nil {
		return err
	}
	r.process, r.PID = p, p.Pid()
	if i == 0 {
		s.Hub.PID = r.PID
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, p.Failure()
		}
		if err := s.refused(); err != nil {
			return false, err
		}
		return httpOK(ctx, "http://"+r.HealthAddr+"/readyz"), nil
	})
	if err != nil {
		return fmt.Errorf("%s did not become ready: %w", r.Name, err)
	}
	return s.write()
}

// StopHub stops every hub replica with sig (SIGTERM to stop cleanly, SIGKILL to crash).
func (s *Sandbox) StopHub(sig syscall.Signal) {
	for i := range s.Hub.Replicas {
		s.StopHubReplica(i, sig)
	}
}

// FreezeHub stops the hub's processes without ending them (SIGSTOP): every replica
// and, with an external etcd, every etcd member. Connections stay open and nothing
// answers, as a hung machine would. ThawHub resumes them.
func (s *Sandbox) FreezeHub() { s.signalHub(syscall.SIGSTOP) }

// ThawHub resumes what FreezeHub stopped.
func (s *Sandbox) ThawHub() { s.signalHub(syscall.SIGCONT) }

func (s *Sandbox) signalHub(sig syscall.Signal) {
	if s.Hub.etcd != nil {
		if sig == syscall.SIGSTOP {
			s.Hub.etcd.Freeze()
		} else {
			s.Hub.etcd.Thaw()
		}
	}
	for _, r := range s.Hub.Replicas {
		if r.process != nil {
			r.process.Signal(sig)
		}
	}
}

// StopHubReplica stops hub replica i with sig and waits until it has exited.
func (s *Sandbox) StopHubReplica(i int, sig syscall.Signal) {
	if p := s.Hub.Replicas[i].process; p != nil {
		p.Kill(sig)
	}
}

// HubLeader returns the replica holding the hub's leader Lease and the Lease's
// holder identity; -1 when no replica holds it (or the holder is unknown).
func (s *Sandbox) HubLeader(ctx context.Context) (int, string, error) {
	kube, err := kubernetes.NewForConfig(s.Hub.cp.Config)
	if err != nil {
		return -1, "", err
	}
	lease, err := kube.CoordinationV1().Leases(hubinfo.Namespace).Get(ctx, leaderLease, metav1.GetOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("hub leader Lease: %w", err)
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	for i, r := range s.Hub.Replicas {
		if r.Name == holder {
			return i, holder, nil
		}
	}
	return -1, holder, nil
}

// leaderLease is the hub's Lease (federation.LeaderElectionID): the sandbox reads it
// by name rather than importing the hub.
const leaderLease = "meshfed-hub"

// Etcd is the hub's external etcd cluster, nil with the embedded etcd.
func (s *Sandbox) Etcd() *etcdcluster.Cluster { return s.Hub.etcd }

// Cluster returns the member cluster with this name.
func (s *Sandbox) Cluster(name string) *Cluster {
	for _, c := range s.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// StartAgent starts the cluster's agent (again) from the chart's agent Deployment,
// authenticated as the chart's meshfed-agent ServiceAccount, and waits until its view
// is synced.
func (s *Sandbox) StartAgent(ctx context.Context, name string) error {
	c := s.Cluster(name)
	if c == nil {
		return fmt.Errorf("sandbox: no cluster %q", name)
	}
	if c.AgentAddr == "" {
		if err := agentAddrs(c); err != nil {
			return err
		}
	}
	var extra []string
	if s.opts.HeartbeatTTL > 0 {
		extra = append(extra, "--heartbeat-ttl="+s.opts.HeartbeatTTL.String())
	}
	if s.opts.ViewCheckInterval > 0 {
		extra = append(extra, "--view-check-interval="+s.opts.ViewCheckInterval.String())
	}
	identities := slices.Clone(s.opts.WorkloadIdentities)
	if s.opts.MTLS {
		for _, id := range []string{XDSClientIdentity, GatewayIdentity} {
			if !slices.Contains(identities, id) {
				identities = append(identities, id)
			}
		}
	}
	if len(identities) > 0 {
		c.CertDir = filepath.Join(c.dir, "certs")
		extra = append(extra, "--workload-cert-dir="+c.CertDir, "--workload-identities="+strings.Join(identities, ","))
	}
	if s.opts.MTLS {
		c.XDSCertDir = filepath.Join(c.CertDir, XDSClientIdentity)
	}
	if d := s.opts.WorkloadCertLifetime; d > 0 {
		extra = append(extra, "--workload-cert-lifetime="+d.String())
	}
	deploy, err := deployment(c.objs, "meshfed-agent")
	if err != nil {
		return err
	}
	pod, err := chart.NewPod(ctx, deploy, chart.PodOptions{Name: name + "-agent", Admin: c.cp.Config,
		Dir: filepath.Join(c.dir, "pods", "agent"), ExtraArgs: extra, Ports: map[int32]string{
			chartAgentHTTPPort: c.AgentAddr, chartAgentMetrics: c.MetricsAddr, chartAgentDebugPort: c.DebugAddr, chartXDSPort: c.XDSAddr}})
	if err != nil {
		return err
	}
	p, err := s.start(pod, filepath.Join(s.Dir, "logs", name+"-agent.log"))
	if err != nil {
		return err
	}
	c.agent, c.AgentPID = p, p.Pid()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, p.Failure()
		}
		if err := s.refused(); err != nil {
			return false, err
		}
		return httpOK(ctx, "http://"+c.AgentAddr+"/readyz"), nil
	})
	if err != nil {
		return fmt.Errorf("%s: agent did not become ready: %w", name, err)
	}
	return s.write()
}

// start starts pod with the sandbox's meshfed binary, its output appended to logPath.
func (s *Sandbox) start(pod *chart.Pod, logPath string) (*proc.Process, error) {
	var size int64
	if fi, err := os.Stat(logPath); err == nil {
		size = fi.Size()
	}
	s.logMu.Lock()
	if s.logFrom == nil {
		s.logFrom = map[string]int64{}
	}
	s.logFrom[logPath] = size
	s.logMu.Unlock()
	return pod.Start(s.opts.MeshfedBinary, logPath)
}

// forbidden is how a component logs a request the API server refused it: its
// ServiceAccount (the chart's) lacks a permission.
var forbidden = regexp.MustCompile(`[^\n]*is forbidden: User \\?"system:serviceaccount:[^\n]*`)

// refused returns an error naming the first request the API server refused any of
// the sandbox's processes since it last started: the chart's RBAC lacks a rule.
// Waiting for readiness would only time out, later and saying less.
func (s *Sandbox) refused() error { return s.refusedSince(true) }

// Refused returns an error naming the first request the API server refused any of
// the sandbox's processes since the sandbox started (a rule the chart's RBAC lacks
// that only some step of a test needed, like a renewal), nil if none was.
func (s *Sandbox) Refused() error { return s.refusedSince(false) }

func (s *Sandbox) refusedSince(lastStart bool) error {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	for _, path := range slices.Sorted(maps.Keys(s.logFrom)) {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var from int64
		if lastStart {
			from = s.logFrom[path]
		}
		data, _ := io.ReadAll(io.NewSectionReader(f, from, 1<<40))
		f.Close()
		if m := forbidden.Find(data); m != nil {
			return fmt.Errorf("the API server refused %s a request: the chart's RBAC lacks a rule (deploy/charts/meshfed/templates/*/rbac.yaml):\n%.600s",
				strings.TrimSuffix(filepath.Base(path), ".log"), m)
		}
	}
	return nil
}

// agentAddrs chooses the loopback addresses of the cluster's agent.
func agentAddrs(c *Cluster) error {
	ports, err := localkube.FreePorts(4)
	if err != nil {
		return err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	c.AgentAddr, c.MetricsAddr, c.DebugAddr, c.XDSAddr = addr(0), addr(1), addr(2), addr(3)
	return nil
}

// StartGateway starts the cluster's east-west gateway (again) from the chart's
// gateway Deployment, configured over xDS by the cluster's agent (the meshfed-agent
// Service), and waits until it is ready.
func (s *Sandbox) StartGateway(ctx context.Context, name string) error {
	c := s.Cluster(name)
	if c == nil {
		return fmt.Errorf("sandbox: no cluster %q", name)
	}
	if c.GatewayHealthAddr == "" {
		ports, err := localkube.FreePorts(1)
		if err != nil {
			return err
		}
		c.GatewayHealthAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	}
	deploy, err := deployment(c.objs, "meshfed-gateway")
	if err != nil {
		return err
	}
	o := chart.PodOptions{Name: name + "-gateway", Admin: c.cp.Config, Dir: filepath.Join(c.dir, "pods", "gateway"),
		Ports:    map[int32]string{chartGatewayPort: c.GatewayAddr, chartGatewayHTTP: c.GatewayHealthAddr},
		Services: map[string]string{"meshfed-agent." + hubinfo.Namespace + ":" + strconv.Itoa(chartXDSPort): c.XDSAddr},
		// Tunnels get 2 s to finish (the chart gives 30 s): tests stop gateways often.
		ExtraArgs: []string{"--drain=2s"}}
	if c.XDSCertDir != "" {
		// The gateway's workload certificate, which the agent keeps current (the
		// release's gateway.xdsCertSecret, which a kubelet would keep current).
		o.Volumes = map[string]string{"xds-certs": filepath.Join(c.CertDir, GatewayIdentity)}
	}
	pod, err := chart.NewPod(ctx, deploy, o)
	if err != nil {
		return err
	}
	p, err := s.start(pod, filepath.Join(s.Dir, "logs", name+"-gateway.log"))
	if err != nil {
		return err
	}
	c.gateway, c.GatewayPID = p, p.Pid()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, p.Failure()
		}
		return httpOK(ctx, "http://"+c.GatewayHealthAddr+"/readyz"), nil
	})
	if err != nil {
		return fmt.Errorf("%s: east-west gateway did not become ready: %w", name, err)
	}
	return s.write()
}

// StopGateway stops the cluster's east-west gateway with sig.
func (s *Sandbox) StopGateway(name string, sig syscall.Signal) {
	if c := s.Cluster(name); c != nil && c.gateway != nil {
		c.gateway.Kill(sig)
	}
}

// StopAgent stops the cluster's agent with sig.
func (s *Sandbox) StopAgent(name string, sig syscall.Signal) {
	if c := s.Cluster(name); c != nil && c.agent != nil {
		c.agent.Kill(sig)
	}
}

// WaitConnected waits until the hub reports every cluster Connected and Synced.
func (s *Sandbox) WaitConnected(ctx context.Context, timeout time.Duration) error {
	hub, err := s.HubClient()
	if err != nil {
		return err
	}
	var waiting string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := s.refused(); err != nil {
			return false, err
		}
		for _, c := range s.Clusters {
			mc := &v1.MeshCluster{}
			if err := hub.Get(ctx, client.ObjectKey{Name: c.Name}, mc); err != nil {
				waiting = c.Name + ": " + err.Error()
				return false, nil
			}
			for _, t := range []string{v1.ConditionConnected, v1.ConditionSynced} {
				if !meta.IsStatusConditionTrue(mc.Status.Conditions, t) {
					waiting = c.Name + " not " + t
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the hub to report every cluster Connected and Synced (%s): %w", waiting, err)
	}
	return nil
}

// HubClient is an administrator client of the hub's API server with meshfed's types.
func (s *Sandbox) HubClient() (client.Client, error) {
	return hubinfo.NewClient(s.Hub.cp.Config)
}

// HubConfig is the hub API server's administrator config.
func (s *Sandbox) HubConfig() *rest.Config { return s.Hub.cp.Config }

// Down stops every process: agents, hub, control planes. It is safe to call twice.
func (s *Sandbox) Down() {
	s.stopOnce.Do(func() {
		defer func() {
			for _, c := range s.Clusters {
				for _, l := range c.links {
					l.Close()
				}
			}
		}()
		var wg sync.WaitGroup
		for _, c := range s.Clusters {
			if c.gateway != nil {
				wg.Go(func() { c.gateway.Stop(10 * time.Second) })
			}
			if c.agent != nil {
				wg.Go(func() { c.agent.Stop(10 * time.Second) })
			}
		}
		wg.Wait()
		if s.Hub != nil {
			for _, r := range s.Hub.Replicas {
				if r.process != nil {
					wg.Go(func() { r.process.Stop(10 * time.Second) })
				}
			}
			wg.Wait()
			if s.Hub.etcd != nil {
				s.Hub.etcd.Stop()
			}
		}
		for _, c := range s.Clusters {
			if c.cp != nil {
				wg.Go(c.cp.Stop)
			}
		}
		if s.Hub != nil && s.Hub.cp != nil {
			wg.Go(s.Hub.cp.Stop)
		}
		wg.Wait()
		os.Remove(filepath.Join(s.Dir, File))
	})
}

func (s *Sandbox) write() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, File), append(data, '\n'), 0o644)
}

// Read reads the sandbox.json in dir.
func Read(dir string) (*Sandbox, error) {
	data, err := os.ReadFile(filepath.Join(dir, File))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no sandbox in %s (no %s)", dir, File)
	}
	if err != nil {
		return nil, err
	}
	s := &Sandbox{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	return s, nil
}

// link puts a link in front of each of the hub's etcd endpoints for cluster c's agent,
// and points the agent's credentials at them.
func (s *Sandbox) link(ctx context.Context, c *Cluster) error {
	var endpoints []string
	for _, e := range s.Hub.Etcd {
		u, err := url.Parse(e)
		if err != nil {
			return err
		}
		l, err := netlink.New(u.Host)
		if err != nil {
			return err
		}
		c.links = append(c.links, l)
		endpoints = append(endpoints, u.Scheme+"://"+l.Addr())
	}
	secrets := kubernetes.NewForConfigOrDie(c.cp.Config).CoreV1().Secrets(hubinfo.Namespace)
	sec, err := secrets.Get(ctx, agentcreds.SecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s: agent credentials: %w", c.Name, err)
	}
	sec.Data[agentcreds.KeyEndpoints] = []byte(strings.Join(endpoints, ","))
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("%s: point the agent at its links: %w", c.Name, err)
	}
	return nil
}

// Partition cuts cluster name's agent off from the hub's etcd (Options.Links).
func (s *Sandbox) Partition(name string) error { return s.setLinks(name, true) }

// Heal ends a Partition.
func (s *Sandbox) Heal(name string) error { return s.setLinks(name, false) }

func (s *Sandbox) setLinks(name string, cut bool) error {
	c := s.Cluster(name)
	if c == nil || len(c.links) == 0 {
		return fmt.Errorf("sandbox: cluster %q has no links (Options.Links)", name)
	}
	for _, l := range c.links {
		if cut {
			l.Cut()
		} else {
			l.Heal()
		}
	}
	return nil
}
