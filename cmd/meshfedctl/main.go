package main

import (
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/internal/version"
)

func main() {
	// grpc-go reads its experimental xDS settings once, at start; dev client and dev
	// demo need the SNI that east-west gateways route on.
	if os.Getenv("GRPC_EXPERIMENTAL_XDS_SNI") == "" {
		os.Setenv("GRPC_EXPERIMENTAL_XDS_SNI", "true")
		if self, err := os.Executable(); err == nil {
			syscall.Exec(self, os.Args, os.Environ()) //nolint:errcheck // on failure: run without it
		}
	}
	root := &cobra.Command{
		Use:          "meshfedctl",
		Short:        "Operate a meshfed federation",
		SilenceUsage: true,
		Version:      version.String(),
	}
	root.SetVersionTemplate("meshfedctl {{.Version}}\n")
	root.AddCommand(clusterCommand(), statusCommand(), failoverCommand(), policyCommand(), trustCommand(), devCommand(), checkCommand(), versionCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
