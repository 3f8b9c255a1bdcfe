package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/eastwest"
	"github.com/meshfed/meshfed/internal/adsclient"
	"github.com/meshfed/meshfed/internal/cmdutil"
)

func gatewayCommand() *cobra.Command {
	var (
		logs             cmdutil.LogOptions
		xdsServer, id    string
		listen, httpAddr string
		drain            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "gateway --xds-server AGENT:15010",
		Short: "Run a cluster's east-west gateway: SNI passthrough to local endpoints, configured over xDS by the agent",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.Logger()
			if err != nil {
				return err
			}
			if id == "" {
				host, _ := os.Hostname()
				id = "eastwest~" + host
			}
			gw, err := eastwest.New(eastwest.Options{Address: listen, Logger: log.WithName("gateway")})
			if err != nil {
				return err
			}
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			health := &http.Server{Addr: httpAddr, Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go health.ListenAndServe() //nolint:errcheck // ends with Shutdown below
			ads := adsclient.New(xdsServer, &corev3.Node{Id: id}, log.WithName("xds"))
			go ads.Run(ctx)                 //nolint:errcheck // ends with ctx
			go configure(ctx, ads, gw, log) //nolint:errcheck
			errc := make(chan error, 1)
			go func() { errc <- gw.ListenAndServe() }()
			log.Info("east-west gateway starting", "listen", listen, "xdsServer", xdsServer)
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			log.Info("draining", "for", drain)
			drainCtx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			err = gw.Shutdown(drainCtx)
			health.Shutdown(context.Background()) //nolint:errcheck
			if errors.Is(err, context.DeadlineExceeded) {
				return nil // drained as long as allowed; the rest were closed
			}
			return err
		},
	}
	f := cmd.Flags()
	logs.AddFlags(f)
	f.StringVar(&xdsServer, "xds-server", "127.0.0.1:15010", "the cluster agent's xDS address")
	f.StringVar(&id, "node-id", "", "xDS node id (default eastwest~<hostname>)")
	f.StringVar(&listen, "listen", ":15443", "where to accept cross-network connections")
	f.StringVar(&httpAddr, "http-addr", ":15021", "address of /healthz, /readyz and /metrics")
	f.DurationVar(&drain, "drain", 30*time.Second, "how long established tunnels may finish after SIGTERM")
	return cmd
}

// configure follows the gateway's listener and the load assignments of the clusters
// it names, and hands every consistent state to the gateway.
func configure(ctx context.Context, ads *adsclient.Client, gw *eastwest.Gateway, log logr.Logger) {
	ads.Subscribe(resourcev3.ListenerType, []string{eastwest.ListenerName})
	var listener *listenerv3.Listener
	assignments := map[string]*endpointv3.ClusterLoadAssignment{}
	for {
		var u adsclient.Update
		select {
		case <-ctx.Done():
			return
		case u = <-ads.Updates():
		}
		switch u.TypeURL {
		case resourcev3.ListenerType:
			l := &listenerv3.Listener{}
			if r, ok := u.Resources[eastwest.ListenerName]; !ok || r.UnmarshalTo(l) != nil {
				continue
			}
			listener = l
			ads.Subscribe(resourcev3.EndpointType, clustersOf(l))
		case resourcev3.EndpointType:
			assignments = map[string]*endpointv3.ClusterLoadAssignment{}
			for name, r := range u.Resources {
				cla := &endpointv3.ClusterLoadAssignment{}
				if r.UnmarshalTo(cla) == nil {
					assignments[name] = cla
				}
			}
		}
		if listener == nil {
			continue
		}
		routes, err := eastwest.FromXDS(listener, assignments)
		if err != nil {
			log.Error(err, "gateway configuration refused; keeping the routes in use")
			continue
		}
		if err := gw.SetRoutes(routes); err != nil {
			log.Error(err, "set gateway routes")
		}
	}
}

// clustersOf lists the clusters the listener's tcp_proxy filters name.
func clustersOf(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tp := &tcpproxyv3.TcpProxy{}
			if f.GetTypedConfig() != nil && f.GetTypedConfig().UnmarshalTo(tp) == nil && tp.GetCluster() != "" {
				out = append(out, tp.GetCluster())
			}
		}
	}
	return out
}
