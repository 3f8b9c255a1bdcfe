package main

import (
	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/eastwest"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

func gatewayCommand() *cobra.Command {
	var (
		logs cmdutil.LogOptions
		opts eastwest.RunOptions
	)
	cmd := &cobra.Command{
		Use:   "gateway --xds-server AGENT:" + xdsnames.AgentXDSPort,
		Short: "Run a cluster's east-west gateway: SNI passthrough to local endpoints, configured over xDS by the agent",
		RunE: func(*cobra.Command, []string) error {
			log, err := logs.Logger()
			if err != nil {
				return err
			}
			opts.Gateway.Logger = log.WithName("gateway")
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			return eastwest.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	logs.AddFlags(f)
	f.StringVar(&opts.XDSServer, "xds-server", "127.0.0.1:"+xdsnames.AgentXDSPort, "the cluster agent's xDS address")
	f.StringVar(&opts.XDSCertDir, "xds-cert-dir", "", "directory with the gateway's workload certificate (tls.crt, tls.key) and the cluster's xDS serving CA (xds-ca.crt) "+
		"to present to an agent whose xDS requires mTLS (--xds-auth=mtls); empty: plaintext xDS")
	f.StringVar(&opts.NodeID, "node-id", "", "xDS node id (default eastwest~<hostname>)")
	f.StringVar(&opts.Gateway.Address, "listen", eastwest.DefaultAddress, "where to accept cross-network connections")
	f.StringVar(&opts.HTTPAddress, "http-addr", eastwest.DefaultHTTPAddress, "address of /healthz, /readyz and /metrics")
	f.DurationVar(&opts.Drain, "drain", eastwest.DefaultDrain, "how long established tunnels may finish after SIGTERM")
	f.IntVar(&opts.Gateway.MaxConnections, "max-connections", eastwest.DefaultMaxConnections, "client connections open at once; more are closed at accept")
	f.IntVar(&opts.Gateway.MaxConnectionsPerSource, "max-connections-per-source", eastwest.DefaultMaxConnectionsPerSource,
		"client connections open at once from one source (an IPv4 address, an IPv6 /64); more are closed at accept")
	f.IntVar(&opts.Gateway.MaxFDs, "max-fds", 0,
		"file descriptors connections and splice pipes may hold; more connections are closed at accept (default: the process's limit less an eighth, 64 to 1024, for /metrics, /readyz and xDS)")
	return cmd
}
