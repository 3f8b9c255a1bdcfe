package main

import (
	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/dev/demo"
)

func devDemoCommand() *cobra.Command {
	var (
		opts    demo.Options
		meshfed string
	)
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Play the failover story, then a canary split and an authorization rule, on a fresh sandbox and print where requests landed in each phase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := meshfedBinary(meshfed)
			if err != nil {
				return err
			}
			opts.MeshfedBinary, opts.Out = bin, cmd.OutOrStdout()
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			return demo.Run(ctx, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", ".meshfed-demo", "directory for the demo's sandbox")
	cmd.Flags().IntVarP(&opts.Requests, "requests", "n", 200, "requests per phase")
	cmd.Flags().StringVar(&meshfed, "meshfed", "", "the meshfed binary (default: next to meshfedctl, else on PATH)")
	return cmd
}
