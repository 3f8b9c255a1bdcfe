package eastwest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/internal/workloadtls"
)

// Defaults of RunOptions.
const (
	// DefaultHTTPAddress serves /healthz, /readyz and /metrics (Istio's status port).
	DefaultHTTPAddress = ":15021"
	// DefaultDrain is how long established tunnels may finish once Run's context ends.
	DefaultDrain = 30 * time.Second
	// nodeIDPrefix starts the default xDS node id, eastwest~<hostname>.
	nodeIDPrefix = "eastwest~"
)

// RunOptions configure Run, what `meshfed gateway` runs. The zero value of every field
// but XDSServer means its default.
type RunOptions struct {
	// Gateway configures the data plane; its Logger is Run's.
	Gateway Options
	// XDSServer is the cluster agent's xDS (ADS) address, host:port. Required.
	XDSServer string
	// XDSCertDir holds the gateway's workload certificate (tls.crt, tls.key, as the
	// agent writes them), presented to an agent whose xDS requires mTLS, and the
	// cluster's xDS serving CA (xds-ca.crt) the agent is verified against; reread at
	// every connection. Empty: plaintext xDS (an agent on loopback).
	XDSCertDir string
	// NodeID is the gateway's xDS node id. Default eastwest~<hostname>.
	NodeID string
	// HTTPAddress serves Handler: /healthz, /readyz and /metrics. Default ":15021".
	HTTPAddress string
	// Drain bounds how long established tunnels may finish once ctx ends; the rest
	// are then closed. Default 30s.
	Drain time.Duration
}

func (o *RunOptions) setDefaults() error {
	if o.XDSServer == "" {
		return errors.New("eastwest: no xDS server")
	}
	if o.NodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("eastwest: default node id: %w", err)
		}
		o.NodeID = nodeIDPrefix + host
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = DefaultHTTPAddress
	}
	if o.Drain == 0 {
		o.Drain = DefaultDrain
	}
	return nil
}

// Run runs a gateway until ctx ends: it serves connections on Gateway.Address, takes
// its routes from XDSServer (FollowXDS), and serves health and its own metrics
// registry (this package's collectors, Go's and the process's) on HTTPAddress. When
// ctx ends it drains (Shutdown) for at most Drain; a drain cut short by the deadline
// is not an error. It returns early only if serving fails.
func Run(ctx context.Context, opts RunOptions) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	log := opts.Gateway.Logger
	gw, err := New(opts.Gateway)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	RegisterMetrics(reg)

	health := &http.Server{Addr: opts.HTTPAddress, Handler: gw.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := health.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Health and metrics server failed", "address", opts.HTTPAddress)
		}
	}()
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		var dial []grpc.DialOption
		if opts.XDSCertDir != "" {
			dial = append(dial, grpc.WithTransportCredentials(workloadtls.ClientCredentials(opts.XDSCertDir)))
		}
		gw.FollowXDS(followCtx, opts.XDSServer, opts.NodeID, log.WithName("xds"), dial...) //nolint:errcheck // returns nil when followCtx ends
	}()
	errc := make(chan error, 1)
	go func() { errc <- gw.ListenAndServe() }()
	log.Info("East-west gateway starting", "listen", gw.opts.Address, "xdsServer", opts.XDSServer, "nodeID", opts.NodeID,
		"maxConnections", gw.opts.MaxConnections, "maxConnectionsPerSource", gw.opts.MaxConnectionsPerSource, "maxFDs", gw.opts.MaxFDs, "xdsCertDir", opts.XDSCertDir)

	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("Draining", "for", opts.Drain)
		drainCtx, cancel := context.WithTimeout(context.Background(), opts.Drain)
		err = gw.Shutdown(drainCtx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil // drained as long as allowed; the rest were closed
		}
	}
	stopFollowing()
	<-followed
	health.Shutdown(context.Background()) //nolint:errcheck // nothing left to serve
	return err
}
