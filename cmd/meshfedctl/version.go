package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/internal/version"
)

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print meshfedctl's version (the hub's and agents' versions: meshfedctl check)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "client: meshfedctl %s\n", version.String())
			return err
		},
	}
}
