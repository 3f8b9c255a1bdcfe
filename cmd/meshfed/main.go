package main

import (
	"context"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/federation"
	"github.com/meshfed/meshfed/trust"
)

func main() {
	root := &cobra.Command{
		Use:          "meshfed",
		Short:        "meshfed federates service meshes across Kubernetes clusters",
		SilenceUsage: true,
	}
	root.AddCommand(hubCommand(), agentCommand(), gatewayCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

// component runs a long-lived component with the logger and kubeconfig its flags
// give, until SIGINT or SIGTERM, and logs its failure once.
func component(name string, logs *cmdutil.LogOptions, kubeconfig string, run func(context.Context, logr.Logger, *rest.Config) error) error {
	log, err := logs.Logger()
	if err != nil {
		return err
	}
	cfg, err := cmdutil.RESTConfig(kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	if err := run(ctx, log, cfg); err != nil {
		log.Error(err, "component failed", "component", name)
		return err
	}
	return nil
}

func hubCommand() *cobra.Command {
	var (
		logs       cmdutil.LogOptions
		kubeconfig string
		opts       federation.Options
	)
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: etcd, the reconcilers of meshfed's CRDs, and the agents' credential signer",
		RunE: func(*cobra.Command, []string) error {
			return component("hub", &logs, kubeconfig, func(ctx context.Context, log logr.Logger, cfg *rest.Config) error {
				opts.Logger, opts.KubeConfig = log, cfg
				return federation.Run(ctx, opts)
			})
		},
	}
	f := cmd.Flags()
	logs.AddFlags(f)
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the hub's API server (default: in-cluster)")
	f.StringVar(&opts.DataDir, "data-dir", "/var/lib/meshfed", "directory for the embedded etcd's data and the hub's etcd CA")
	f.StringVar(&opts.EtcdListenURL, "etcd-listen-url", federation.DefaultEtcdListenURL, "where the embedded etcd serves clients")
	f.StringSliceVar(&opts.EtcdAdvertiseURLs, "etcd-advertise-urls", nil, "etcd URLs agents use (default: --etcd-listen-url, or --etcd-endpoints)")
	f.StringSliceVar(&opts.EtcdServerNames, "etcd-server-names", nil, "extra DNS names or IPs for the embedded etcd's certificate")
	f.StringSliceVar(&opts.EtcdEndpoints, "etcd-endpoints", nil, "external etcd endpoints; replaces the embedded etcd")
	f.StringVar(&opts.EtcdCAFile, "etcd-ca-file", "", "external etcd: CA of its serving certificate")
	f.StringVar(&opts.EtcdCertFile, "etcd-cert-file", "", "external etcd: client certificate of its root user")
	f.StringVar(&opts.EtcdKeyFile, "etcd-key-file", "", "external etcd: key of that client certificate")
	f.StringVar(&opts.EtcdClientCACertFile, "etcd-client-ca-cert-file", "", "external etcd: CA it trusts for client certificates, to sign agents'")
	f.StringVar(&opts.EtcdClientCAKeyFile, "etcd-client-ca-key-file", "", "external etcd: key of that CA")
	f.Int64Var(&opts.EtcdQuotaBytes, "etcd-quota-bytes", federation.DefaultEtcdQuotaBytes,
		"embedded etcd: database size at which etcd raises NOSPACE and refuses writes (at most 8 GiB)")
	f.UintVar(&opts.EtcdMaxRequestBytes, "etcd-max-request-bytes", federation.DefaultEtcdMaxRequestBytes,
		"embedded etcd: largest request (one key and value) etcd accepts")
	f.DurationVar(&opts.EtcdCompactionInterval, "etcd-compaction-interval", federation.DefaultEtcdCompactionInterval,
		"compact etcd history older than this: the embedded etcd compacts itself, the leading hub compacts an external one")
	f.Int64Var(&opts.EtcdDefragMinFreeBytes, "etcd-defrag-min-free-bytes", federation.DefaultEtcdDefragMinFreeBytes,
		"defragment an etcd member once its free pages reach this size and --etcd-defrag-min-ratio")
	f.Float64Var(&opts.EtcdDefragMinRatio, "etcd-defrag-min-ratio", federation.DefaultEtcdDefragMinRatio,
		"defragment an etcd member once this share of its database is free pages and --etcd-defrag-min-free-bytes")
	f.DurationVar(&opts.EtcdCheckInterval, "etcd-check-interval", federation.DefaultEtcdCheckInterval,
		"how often the leading hub reads etcd's size and alarms, defragments and recovers from NOSPACE")
	f.StringVar(&opts.MetricsAddr, "metrics-addr", federation.DefaultMetricsAddr, "Prometheus metrics address; 0 disables")
	f.StringVar(&opts.HealthAddr, "health-addr", federation.DefaultHealthAddr, "health probe address; 0 disables")
	f.StringVar(&opts.ConsoleAddr, "console-addr", "", "address of the read-only web console, e.g. 127.0.0.1:9095 (then kubectl port-forward); "+
		"off by default: it shows the whole federation to anyone who reaches it, unauthenticated")
	f.StringToStringVar(&opts.ConsoleAgents, "console-agents", nil, "where the console asks each cluster's agent for failover explain tables: "+
		"<cluster>=<URL of the agent's --debug-addr>, comma-separated")
	f.BoolVar(&opts.LeaderElection, "leader-elect", false, "run as one of several hub replicas: the holder of the Lease "+
		federation.LeaderElectionID+" writes, the others stand by; needs --etcd-endpoints (an external etcd cluster of 3 or 5 members)")
	f.StringVar(&opts.LeaderElectionIdentity, "leader-elect-identity", "", "this replica's name in the Lease (default: host name and a random suffix)")
	f.DurationVar(&opts.LeaseDuration, "leader-elect-lease-duration", federation.DefaultLeaseDuration,
		"how long standbys wait after the leader's last renewal before taking over")
	f.DurationVar(&opts.RenewDeadline, "leader-elect-renew-deadline", federation.DefaultRenewDeadline,
		"how long the leader retries renewing before it gives up leading (and exits)")
	f.DurationVar(&opts.RetryPeriod, "leader-elect-retry-period", federation.DefaultRetryPeriod, "how often replicas try to acquire or renew the Lease")
	f.BoolVar(&opts.MeshCA, "mesh-ca", false, "run the mesh CA: cert-manager's controllers in-process, the root as a CA ClusterIssuer, "+
		"clusters' intermediate CSRs signed")
	f.StringVar(&opts.TrustDomain, "trust-domain", v1.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
	f.DurationVar(&opts.AgentCertLifetime, "agent-cert-lifetime", federation.DefaultAgentCertLifetime,
		"lifetime of agents' etcd client certificates (agents renew them at two thirds of it); at most "+federation.MaxAgentCertLifetime.String())
	f.DurationVar(&opts.EtcdCertLifetime, "etcd-cert-lifetime", federation.DefaultEtcdCertLifetime,
		"lifetime of the embedded etcd's serving certificate and of the hub's etcd client certificate, renewed at two thirds of it")
	return cmd
}

func agentCommand() *cobra.Command {
	var (
		logs       cmdutil.LogOptions
		kubeconfig string
		opts       clusteragent.Options
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a member cluster's agent: publish its services to the hub and import everyone else's",
		RunE: func(*cobra.Command, []string) error {
			return component("agent", &logs, kubeconfig, func(ctx context.Context, log logr.Logger, cfg *rest.Config) error {
				opts.Logger, opts.KubeConfig = log, cfg
				return clusteragent.Run(ctx, opts)
			})
		},
	}
	f := cmd.Flags()
	logs.AddFlags(f)
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the member cluster (default: in-cluster)")
	f.StringVar(&opts.Namespace, "namespace", "meshfed-system", "namespace of the credentials Secret and the leader Lease")
	f.StringVar(&opts.Identity, "identity", "", "this replica's stable name (default: host name)")
	f.StringVar(&opts.HTTPAddr, "http-addr", clusteragent.DefaultHTTPAddr, "address of /healthz and /readyz (the kubelet's probes)")
	f.StringVar(&opts.MetricsAddr, "metrics-addr", clusteragent.DefaultMetricsAddr,
		"address of /metrics; loopback by default, give e.g. :9093 for Prometheus to scrape; the same address as another surface shares its port; 0 disables")
	f.StringVar(&opts.DebugAddr, "debug-addr", clusteragent.DefaultDebugAddr,
		"address of /debug/view and /debug/explain (the whole federation's view, unauthenticated): loopback by default; 0 disables")
	f.StringVar(&opts.XDSAddr, "xds-addr", "", "address of the xDS (ADS) server for the cluster's proxies (default "+
		clusteragent.DefaultXDSAddr+" with --xds-auth=mtls, "+clusteragent.DefaultXDSLoopbackAddr+" with none)")
	f.StringVar(&opts.XDSAuth, "xds-auth", "", "how the xDS server authenticates proxies: "+clusteragent.XDSAuthMTLS+
		" (TLS from the cluster's own xDS serving CA, which proxies trust by xds-ca.crt; proxies present a workload certificate of this cluster) or "+clusteragent.XDSAuthNone+
		" (plaintext, loopback only unless --xds-insecure-listen); default mtls with --mtls, none without")
	f.BoolVar(&opts.XDSInsecureListen, "xds-insecure-listen", false,
		"with --xds-auth=none, let --xds-addr be an address beyond loopback: anyone who reaches it is served, unauthenticated")
	f.StringSliceVar(&opts.XDSServerNames, "xds-server-names", nil,
		"DNS names and IPs of the xDS serving certificate, the hosts proxies' bootstraps use (default: the meshfed-agent Service's names, localhost, 127.0.0.1, ::1 and the --xds-addr IP)")
	f.StringVar(&opts.WorkloadCerts.Dir, "workload-cert-dir", "", "issue workload certificates from the cluster's intermediate into DIR/<ns>/<sa>/")
	f.StringSliceVar(&opts.WorkloadCerts.Identities, "workload-identities", nil, "identities to issue workload certificates for, <namespace>/<serviceAccount>")
	f.DurationVar(&opts.WorkloadCerts.Lifetime, "workload-cert-lifetime", trust.DefaultWorkloadLifetime, "lifetime of workload certificates")
	f.BoolVar(&opts.MTLS, "mtls", false, "send proxies mTLS settings (SNI, certificate provider \"meshfed\", SPIFFE SAN matcher): "+
		"their bootstraps must define the provider; needed to reach clusters on other networks")
	f.StringVar(&opts.TrustDomain, "trust-domain", v1.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
	f.DurationVar(&opts.HeartbeatTTL, "heartbeat-ttl", clusteragent.DefaultHeartbeatTTL, "lease of the heartbeat: how soon the federation notices a dead agent")
	f.DurationVar(&opts.ViewCheckInterval, "view-check-interval", clusteragent.DefaultViewCheckInterval,
		"how often to compare the imported view with the hub's store (a keys-only read of the whole keyspace) and resync it if they differ")
	return cmd
}
