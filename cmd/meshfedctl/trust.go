package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func trustCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Check the mesh's trust: roots, bundles, intermediates"}
	cmd.AddCommand(trustCheckCommand())
	return cmd
}

func trustCheckCommand() *cobra.Command {
	var (
		hubKubeconfig, dir string
		clusters           []string
	)
	cmd := &cobra.Command{
		Use:   "check --hub-kubeconfig HUB --cluster NAME=KUBECONFIG … | --dir SANDBOX",
		Short: "Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them",
		Long: `Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them.

Every cluster registered on the hub is listed. The check needs each one's kubeconfig
(--cluster NAME=KUBECONFIG, or --dir of a sandbox); a registered cluster without one is
shown as not checked, with the hub's view of its intermediate, and the check fails.
It exits non-zero unless at least one cluster was checked and every cluster passed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var members []trustcheck.Member
			if dir != "" {
				s, err := sandbox.Read(dir)
				if err != nil {
					return err
				}
				hubKubeconfig = s.Hub.Kubeconfig
				for _, c := range s.Clusters {
					clusters = append(clusters, c.Name+"="+c.Kubeconfig)
				}
			}
			hub, err := cmdutil.RESTConfig(hubKubeconfig)
			if err != nil {
				return err
			}
			for _, c := range clusters {
				name, path, ok := strings.Cut(c, "=")
				if !ok {
					return fmt.Errorf("--cluster %q: use NAME=KUBECONFIG", c)
				}
				cfg, err := cmdutil.RESTConfig(path)
				if err != nil {
					return err
				}
				members = append(members, trustcheck.Member{Name: name, Config: cfg})
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			results, err := trustcheck.Check(ctx, hub, members, time.Now())
			if err != nil {
				return err
			}
			if err := trustcheck.Print(cmd.OutOrStdout(), results); err != nil {
				return err
			}
			// Non-zero unless something was verified and all of it passed.
			return trustcheck.Verdict(results)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.StringArrayVar(&clusters, "cluster", nil, "NAME=KUBECONFIG of a member cluster (repeatable)")
	f.StringVar(&dir, "dir", "", "check every cluster of the sandbox in DIR instead")
	return cmd
}
