package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func trustCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Check the mesh's trust (roots, bundles, intermediates) and rotate its root"}
	cmd.AddCommand(trustCheckCommand(), trustRotateCommand())
	return cmd
}

// memberFlags are how trust commands reach the hub and the member clusters.
type memberFlags struct {
	hubKubeconfig, dir string
	clusters           []string
}

func (m *memberFlags) add(f *pflag.FlagSet) {
	f.StringVar(&m.hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.StringArrayVar(&m.clusters, "cluster", nil, "NAME=KUBECONFIG of a member cluster (repeatable)")
	f.StringVar(&m.dir, "dir", "", "use the hub and every cluster of the sandbox in DIR instead")
}

// resolve returns the hub's config and the members to check.
func (m *memberFlags) resolve() (*rest.Config, []trustcheck.Member, error) {
	hubKubeconfig, clusters := m.hubKubeconfig, m.clusters
	if m.dir != "" {
		s, err := sandbox.Read(m.dir)
		if err != nil {
			return nil, nil, err
		}
		hubKubeconfig = s.Hub.Kubeconfig
		for _, c := range s.Clusters {
			clusters = append(clusters, c.Name+"="+c.Kubeconfig)
		}
	}
	hub, err := cmdutil.RESTConfig(hubKubeconfig)
	if err != nil {
		return nil, nil, err
	}
	var members []trustcheck.Member
	for _, c := range clusters {
		name, path, ok := strings.Cut(c, "=")
		if !ok {
			return nil, nil, fmt.Errorf("--cluster %q: use NAME=KUBECONFIG", c)
		}
		cfg, err := cmdutil.RESTConfig(path)
		if err != nil {
			return nil, nil, err
		}
		members = append(members, trustcheck.Member{Name: name, Config: cfg})
	}
	return hub, members, nil
}

func trustCheckCommand() *cobra.Command {
	var m memberFlags
	cmd := &cobra.Command{
		Use:   "check --hub-kubeconfig HUB --cluster NAME=KUBECONFIG … | --dir SANDBOX",
		Short: "Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them",
		Long: `Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them.

Every cluster registered on the hub is listed. The check needs each one's kubeconfig
(--cluster NAME=KUBECONFIG, or --dir of a sandbox); a registered cluster without one is
shown as not checked, with the hub's view of its intermediate, and the check fails.
It exits non-zero unless at least one cluster was checked and every cluster passed.

It names the roots: which ones each cluster serves, which one its intermediate and
its workloads' certificates are under, and where a root rotation stands
(meshfedctl trust rotate).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, members, err := m.resolve()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			o, err := observe(ctx, hub, members, 0)
			if err != nil {
				return err
			}
			if o.phaseErr != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "rotation: %v\n\n", o.phaseErr)
			} else {
				trustcheck.PrintPlan(cmd.OutOrStdout(), o.plan)
				fmt.Fprintln(cmd.OutOrStdout())
			}
			if err := trustcheck.Print(cmd.OutOrStdout(), o.results); err != nil {
				return err
			}
			// Non-zero unless something was verified and all of it passed.
			return trustcheck.Verdict(o.results)
		},
	}
	m.add(cmd.Flags())
	return cmd
}
