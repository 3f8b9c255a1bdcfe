package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/dev/gwbench"
)

func devBenchGatewayCommand() *cobra.Command {
	var (
		meshfed, dir string
		keep         bool
		mib          int64
	)
	opts := gwbench.Defaults
	mib = opts.Bytes >> 20
	cmd := &cobra.Command{
		Use:   "bench-gateway",
		Short: "Measure the east-west gateway beside a minimal splice proxy and direct TCP: throughput, round trips and connection setup, with ratios",
		Long: "Runs the east-west gateway benchmark (docs/performance.md): the real gateway (meshfed gateway, configured over xDS) and a minimal " +
			"splice(2) proxy, each its own process pinned to CPU 1 with taskset, in front of a sink and a TLS echo server; the load client and " +
			"the backends run in this process, pinned to CPU 0. Prints one table with every figure for direct TCP, the splice proxy and the " +
			"gateway, and the ratios gateway/splice and gateway/direct.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := meshfedBinary(meshfed)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			opts.MeshfedBinary, opts.Out, opts.Bytes = bin, cmd.ErrOrStderr(), mib<<20
			opts.SpliceCommand = func(forwards []string) *exec.Cmd {
				args := []string{"dev", "splice-proxy"}
				for _, f := range forwards {
					args = append(args, "--forward", f)
				}
				return exec.Command(self, args...)
			}
			if opts.Dir = dir; dir == "" {
				if opts.Dir, err = os.MkdirTemp("", "meshfed-bench-gateway-"); err != nil {
					return err
				}
				if !keep {
					defer os.RemoveAll(opts.Dir)
				}
			}
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			res, err := gwbench.Run(ctx, opts)
			if err != nil {
				return fmt.Errorf("%w (logs in %s)", err, opts.Dir)
			}
			res.Print(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Rounds, "rounds", opts.Rounds, "rounds; each measures direct, splice and gateway in turn")
	f.Int64Var(&mib, "mib", mib, "MiB every throughput measurement moves")
	f.IntVar(&opts.Conns, "conns", opts.Conns, "connections a throughput measurement spreads its bytes over")
	f.IntVar(&opts.RoundTrips, "round-trips", opts.RoundTrips, "round trips per round and path")
	f.IntVar(&opts.RTTConns, "rtt-conns", opts.RTTConns, "TLS connections the round trips are spread over, one after the other")
	f.IntVar(&opts.MessageSize, "message-size", opts.MessageSize, "bytes of a round trip's message")
	f.IntVar(&opts.Setups, "setups", opts.Setups, "new TLS connections per round and path")
	f.BoolVar(&opts.NoPin, "no-pin", false, "do not pin the processes to CPUs (taskset)")
	f.StringVar(&dir, "dir", "", "directory for the gateway's and the splice proxy's logs (default: a temporary directory, removed after)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory (the logs) after the run")
	f.StringVar(&meshfed, "meshfed", "", "the meshfed binary (default: next to meshfedctl, else on PATH)")
	return cmd
}

// devSpliceProxyCommand is the benchmark's minimal splice proxy, hidden: bench-gateway
// runs it as its own process.
func devSpliceProxyCommand() *cobra.Command {
	var forwards []string
	cmd := &cobra.Command{
		Use:    "splice-proxy --forward LISTEN=TARGET...",
		Short:  "A minimal TCP proxy with splice(2), the baseline of bench-gateway",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			return gwbench.ServeSplice(ctx, forwards, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVar(&forwards, "forward", nil, "listen=target, e.g. 127.0.0.1:0=127.0.0.1:8080 (repeatable)")
	return cmd
}
