package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/register"
	"github.com/meshfed/meshfed/internal/dev/etcdcluster"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/netlink"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/dev/testnet"
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
	// MTLS runs the agents with --mtls: proxies then need the "meshfed" certificate
	// provider in their bootstrap.
	MTLS bool
	// MeshCA runs the hub with --mesh-ca: cert-manager's controllers and the mesh root.
	// The agents then serve xDS with mTLS only (--xds-auth=mtls): the sandbox issues
	// XDSClientIdentity and GatewayIdentity in every cluster, for its clients and
	// gateways, and Up waits until each agent serves xDS over TLS.
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
	// AgentAddr serves the agent's /healthz, /readyz, /metrics and /debug/view.
	AgentAddr string `json:"agentAddr"`
	// XDSAddr is the agent's xDS server, for the cluster's proxies.
	XDSAddr  string `json:"xdsAddr"`
	AgentPID int    `json:"agentPID"`
	// GatewayAddr is the cluster's east-west gateway, as registered in its MeshCluster.
	GatewayAddr string `json:"gatewayAddr"`
	// CertDir holds workload certificates the agent issues, <ns>/<sa>/{tls.crt,tls.key,ca.crt}.
	CertDir string `json:"certDir,omitempty"`
	// XDSCertDir is the workload certificate xDS clients of the sandbox present to the
	// agent (XDSClientIdentity) when its xDS requires mTLS (Options.MeshCA); empty:
	// the agent serves plaintext xDS on loopback. XDSChannelCreds and XDSCredentials
	// are what bootstraps and raw ADS clients use.
	XDSCertDir string `json:"xdsCertDir,omitempty"`
	GatewayPID int    `json:"gatewayPID"`
	// GatewayHealthAddr serves the gateway's /healthz, /readyz and /metrics.
	GatewayHealthAddr string `json:"gatewayHealthAddr"`

	cp      *localkube.ControlPlane
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
	args    []string
}

// Sandbox is a running federation. Its JSON form is sandbox.json.
type Sandbox struct {
	Dir      string     `json:"dir"`
	PID      int        `json:"pid"` // the process that owns everything
	Hub      *Hub       `json:"hub"`
	Clusters []*Cluster `json:"clusters"`

	opts     Options
	stopOnce sync.Once
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
	if opts.MeshCA {
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

func (s *Sandbox) startHub(ctx context.Context) error {
	h := s.Hub
	replicas := max(s.opts.HubReplicas, 1)
	ports, err := localkube.FreePorts(1 + 3*replicas)
	if err != nil {
		return err
	}
	common := []string{"hub", "--kubeconfig", h.Kubeconfig, "--log-format", "text"}
	// The console asks the agents for explain tables: their addresses are chosen now
	// (StartAgent keeps them).
	var agents []string
	for _, c := range s.Clusters {
		if c.AgentAddr == "" {
			if err := agentAddrs(c); err != nil {
				return err
			}
		}
		agents = append(agents, c.Name+"=http://"+c.AgentAddr)
	}
	common = append(common, "--console-agents", strings.Join(agents, ","))
	if h.etcd == nil {
		h.Etcd = []string{"https://127.0.0.1:" + strconv.Itoa(ports[0])}
		common = append(common, "--etcd-listen-url", h.Etcd[0])
	} else {
		// The documented HA setup: every member to every replica (and, through the hub
		// ConfigMap, to every agent); the agents' client CA is the cluster's client CA,
		// the same for every replica, so any replica signs certificates etcd accepts.
		h.Etcd = h.etcd.Endpoints()
		f := h.etcd.Files
		common = append(common, "--etcd-endpoints", strings.Join(h.Etcd, ","), "--etcd-ca-file", f.CA,
			"--etcd-cert-file", f.RootCert, "--etcd-key-file", f.RootKey,
			"--etcd-client-ca-cert-file", f.CA, "--etcd-client-ca-key-file", f.CAKey)
	}
	if s.opts.MeshCA {
		common = append(common, "--mesh-ca")
	}
	if d := s.opts.AgentCertLifetime; d > 0 {
		common = append(common, "--agent-cert-lifetime", d.String())
	}
	if d := s.opts.EtcdCertLifetime; d > 0 {
		common = append(common, "--etcd-cert-lifetime", d.String())
	}
	if s.opts.ha() {
		lease := s.opts.HubLeaseDuration
		common = append(common, "--leader-elect", "--leader-elect-lease-duration", lease.String(),
			"--leader-elect-renew-deadline", (lease * 2 / 3).String(), "--leader-elect-retry-period", (lease / 6).String())
	}
	for i := range replicas {
		r := &HubReplica{Name: "hub", MetricsAddr: "127.0.0.1:" + strconv.Itoa(ports[1+2*i]),
			HealthAddr: "127.0.0.1:" + strconv.Itoa(ports[2+2*i]), ConsoleAddr: "127.0.0.1:" + strconv.Itoa(ports[1+2*replicas+i])}
		dataDir := filepath.Join(h.dir, "data")
		if s.opts.ha() {
			r.Name = "hub-" + strconv.Itoa(i)
			dataDir = filepath.Join(h.dir, r.Name)
		}
		r.args = append(slices.Clone(common), "--data-dir", dataDir, "--metrics-addr", r.MetricsAddr, "--health-addr", r.HealthAddr,
			"--console-addr", r.ConsoleAddr)
		if s.opts.ha() {
			r.args = append(r.args, "--leader-elect-identity", r.Name)
		}
		h.Replicas = append(h.Replicas, r)
	}
	h.MetricsAddr = h.Replicas[0].MetricsAddr
	return s.StartHub(ctx)
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

// StartHubReplica starts hub replica i (again) and waits until it is ready: its view
// of etcd synced, leader or not.
func (s *Sandbox) StartHubReplica(ctx context.Context, i int) error {
	r := s.Hub.Replicas[i]
	p, err := proc.Start(r.Name, s.opts.MeshfedBinary, r.args, filepath.Join(s.Dir, "logs", r.Name+".log"))
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

// StartAgent starts the cluster's agent (again), with a kubeconfig for the agent's own
// ServiceAccount, and waits until its view is synced.
func (s *Sandbox) StartAgent(ctx context.Context, name string) error {
	c := s.Cluster(name)
	if c == nil {
		return fmt.Errorf("sandbox: no cluster %q", name)
	}
	kubeconfig := filepath.Join(c.dir, "agent.kubeconfig")
	if err := agentKubeconfig(ctx, c.cp.Config, kubeconfig); err != nil {
		return fmt.Errorf("%s: agent kubeconfig: %w", name, err)
	}
	if c.AgentAddr == "" {
		if err := agentAddrs(c); err != nil {
			return err
		}
	}
	// AgentAddr serves the probes, /metrics and /debug on loopback.
	args := []string{"agent", "--kubeconfig", kubeconfig, "--identity", name + "-agent", "--http-addr", c.AgentAddr,
		"--metrics-addr", c.AgentAddr, "--debug-addr", c.AgentAddr, "--xds-addr", c.XDSAddr, "--log-format", "text"}
	if s.opts.HeartbeatTTL > 0 {
		args = append(args, "--heartbeat-ttl", s.opts.HeartbeatTTL.String())
	}
	if s.opts.ViewCheckInterval > 0 {
		args = append(args, "--view-check-interval", s.opts.ViewCheckInterval.String())
	}
	if s.opts.MTLS {
		args = append(args, "--mtls")
	}
	identities := slices.Clone(s.opts.WorkloadIdentities)
	if s.opts.MeshCA {
		args = append(args, "--xds-auth", "mtls")
		for _, id := range []string{XDSClientIdentity, GatewayIdentity} {
			if !slices.Contains(identities, id) {
				identities = append(identities, id)
			}
		}
	}
	if len(identities) > 0 {
		c.CertDir = filepath.Join(c.dir, "certs")
		args = append(args, "--workload-cert-dir", c.CertDir, "--workload-identities", strings.Join(identities, ","))
	}
	if s.opts.MeshCA {
		c.XDSCertDir = filepath.Join(c.CertDir, XDSClientIdentity)
	}
	if d := s.opts.WorkloadCertLifetime; d > 0 {
		args = append(args, "--workload-cert-lifetime", d.String())
	}
	p, err := proc.Start(name+"/agent", s.opts.MeshfedBinary, args, filepath.Join(s.Dir, "logs", name+"-agent.log"))
	if err != nil {
		return err
	}
	c.agent, c.AgentPID = p, p.Pid()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, p.Failure()
		}
		return httpOK(ctx, "http://"+c.AgentAddr+"/readyz"), nil
	})
	if err != nil {
		return fmt.Errorf("%s: agent did not become ready: %w", name, err)
	}
	return s.write()
}

// agentAddrs chooses the loopback addresses of the cluster's agent.
func agentAddrs(c *Cluster) error {
	ports, err := localkube.FreePorts(2)
	if err != nil {
		return err
	}
	c.AgentAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	c.XDSAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	return nil
}

// StartGateway starts the cluster's east-west gateway (again), configured over xDS by
// the cluster's agent, and waits until it is ready.
func (s *Sandbox) StartGateway(ctx context.Context, name string) error {
	c := s.Cluster(name)
	if c == nil {
		return fmt.Errorf("sandbox: no cluster %q", name)
	}
	ports, err := localkube.FreePorts(1)
	if err != nil {
		return err
	}
	health := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"gateway", "--xds-server", c.XDSAddr,
		"--listen", c.GatewayAddr, "--http-addr", health, "--node-id", "eastwest~" + name, "--drain", "2s", "--log-format", "text"}
	if c.XDSCertDir != "" {
		args = append(args, "--xds-cert-dir", filepath.Join(c.CertDir, GatewayIdentity))
	}
	p, err := proc.Start(name+"/gateway", s.opts.MeshfedBinary, args, filepath.Join(s.Dir, "logs", name+"-gateway.log"))
	if err != nil {
		return err
	}
	c.gateway, c.GatewayPID, c.GatewayHealthAddr = p, p.Pid(), health
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, s.opts.Timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, p.Failure()
		}
		return httpOK(ctx, "http://"+health+"/readyz"), nil
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

// agentKubeconfig writes a kubeconfig that authenticates as the agent's
// ServiceAccount (created by registration) with a token from the TokenRequest API.
func agentKubeconfig(ctx context.Context, admin *rest.Config, path string) error {
	kube, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	tr, err := kube.CoreV1().ServiceAccounts(hubinfo.Namespace).CreateToken(ctx, "meshfed-agent",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](7 * 24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return err
	}
	cfg := &rest.Config{Host: admin.Host, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
	return localkube.WriteKubeconfig(path, "agent", cfg)
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
