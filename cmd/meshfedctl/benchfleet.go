package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/dev/fleetbench"
)

func devBenchFleetCommand() *cobra.Command {
	var (
		meshfed string
		keep    bool
	)
	opts, envErr := fleetbench.FromEnv(fleetbench.Defaults)
	cmd := &cobra.Command{
		Use:   "bench-fleet",
		Short: "Simulate a fleet of clusters writing through the hub's etcd into a real agent with ADS streams, and print each figure beside its budget",
		Long: "Runs the fleet benchmark (docs/performance.md): simulated clusters write their records and heartbeats into an etcd of the hub's kind, " +
			"one real agent imports them and serves ADS streams, and one table shows every figure beside its budget. Sizes come from the flags, " +
			"whose defaults are the FLEET_* environment variables (FLEET_CLUSTERS, FLEET_SERVICES, FLEET_ENDPOINTS, FLEET_STREAMS, FLEET_RATE, " +
			"FLEET_DURATION, FLEET_ZONES) or else the built-in sizes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return envErr
			}
			bin, err := meshfedBinary(meshfed)
			if err != nil {
				return err
			}
			opts.MeshfedBinary, opts.Out = bin, cmd.ErrOrStderr()
			if opts.Dir == "" {
				if opts.Dir, err = os.MkdirTemp("", "meshfed-bench-fleet-"); err != nil {
					return err
				}
				if !keep && !opts.Profile {
					defer os.RemoveAll(opts.Dir)
				}
			}
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			res, err := fleetbench.Run(ctx, opts)
			if err != nil {
				return fmt.Errorf("%w (files in %s)", err, opts.Dir)
			}
			res.Print(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Clusters, "clusters", opts.Clusters, "simulated member clusters (1-255)")
	f.IntVar(&opts.Services, "services", opts.Services, "services every cluster publishes")
	f.IntVar(&opts.Endpoints, "endpoints", opts.Endpoints, "endpoints of every service in every cluster")
	f.IntVar(&opts.Streams, "streams", opts.Streams, "ADS streams of the fan-out phase")
	f.IntVar(&opts.Rate, "rate", opts.Rate, "churn: endpoint readiness flips per second")
	f.DurationVar(&opts.Duration, "duration", opts.Duration, "length of the churn phase and of the heartbeat-only window")
	f.IntVar(&opts.Zones, "zones", opts.Zones, "locality zones of the agent's cluster the streams sit in")
	f.StringVar(&opts.Dir, "dir", "", "directory for etcd, the kube-apiserver and the agent's log (default: a temporary directory, removed after)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory (the agent's log) after the run")
	f.StringVar(&opts.AgentMemoryLimit, "agent-memory-limit", opts.AgentMemoryLimit, "the agent's GOMEMLIMIT, as a container memory limit of about 10% more sets it; empty: none")
	f.BoolVar(&opts.Profile, "profile", false, "write the agent's CPU profiles (churn, fan-out) and heap profile (after the bootstrap) into --dir (implies --keep)")
	f.StringVar(&meshfed, "meshfed", "", "the meshfed binary (default: next to meshfedctl, else on PATH)")
	return cmd
}
