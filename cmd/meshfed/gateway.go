package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/eastwest"
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
			go health.ListenAndServe()                               //nolint:errcheck // ends with Shutdown below
			go gw.FollowXDS(ctx, xdsServer, id, log.WithName("xds")) //nolint:errcheck // ends with ctx
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
