// Command meshfedctl is meshfed's operator CLI: register clusters, show the
// federation's status, and run a local sandbox federation.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:          "meshfedctl",
		Short:        "Operate a meshfed federation",
		SilenceUsage: true,
	}
	root.AddCommand(clusterCommand(), statusCommand(), failoverCommand(), trustCommand(), devCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
