package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/trust/meshca"
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
	var (
		m          memberFlags
		certs      []string
		bundleFile string
	)
	cmd := &cobra.Command{
		Use:   "check --hub-kubeconfig HUB --cluster NAME=KUBECONFIG … | --dir SANDBOX  [--cert CHAIN.pem … [--bundle ROOTS.pem]]",
		Short: "Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them",
		Long: `Verify, for every cluster, that the bundle it serves is the hub's roots and its intermediate chains to them.

Every cluster registered on the hub is listed. The check needs each one's kubeconfig
(--cluster NAME=KUBECONFIG, or --dir of a sandbox); a registered cluster without one is
shown as not checked, with the hub's view of its intermediate, and the check fails.
It exits non-zero unless at least one cluster was checked and every cluster passed.
A cluster whose intermediate is not bound to it by name constraints (one signed before
identities were bound to clusters; its agent renews it) fails.

It names the roots: which ones each cluster serves, which one its intermediate and
its workloads' certificates are under, and where a root rotation stands
(meshfedctl trust rotate).

With --cert it checks workload certificates instead: each file holds a chain (the leaf,
then its intermediates), verified as a mesh peer verifies it against the hub's active
roots (or the roots in --bundle): it must chain to one within every intermediate's name
constraints, and its identity must be in the identity domain of the cluster whose
intermediate issued it, spiffe://<cluster>.<trust domain>/... It exits non-zero unless
every chain verifies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if len(certs) > 0 {
				return checkCerts(ctx, cmd.OutOrStdout(), &m, certs, bundleFile)
			}
			if bundleFile != "" {
				return errors.New("--bundle goes with --cert")
			}
			hub, members, err := m.resolve()
			if err != nil {
				return err
			}
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
	cmd.Flags().StringArrayVar(&certs, "cert", nil, "check the workload certificate chain in FILE (PEM: leaf, then intermediates) instead of the clusters (repeatable)")
	cmd.Flags().StringVar(&bundleFile, "bundle", "", "with --cert: verify against the roots in FILE instead of the hub's active roots")
	return cmd
}

// checkCerts is `trust check --cert`: every chain against the bundle (the hub's
// active roots unless bundleFile).
func checkCerts(ctx context.Context, out io.Writer, m *memberFlags, files []string, bundleFile string) error {
	var bundle []byte
	names := trustcheck.Roots{}
	if bundleFile != "" {
		b, err := os.ReadFile(bundleFile)
		if err != nil {
			return err
		}
		bundle = b
	} else {
		hub, _, err := m.resolve()
		if err != nil {
			return err
		}
		ca, err := meshca.NewClient(hub)
		if err != nil {
			return err
		}
		roots, err := meshca.Roots(ctx, ca)
		if err != nil {
			return fmt.Errorf("the hub's roots: %w", err)
		}
		bundle = meshca.BundleOf(roots)
		if names, err = trustcheck.RootNames(ctx, ca); err != nil {
			return err
		}
	}
	var results []trustcheck.CertResult
	now := time.Now()
	for _, f := range files {
		chain, err := os.ReadFile(f)
		if err != nil {
			results = append(results, trustcheck.CertResult{Source: f, Detail: err.Error()})
			continue
		}
		results = append(results, trustcheck.CheckCert(f, chain, bundle, names, now))
	}
	if err := trustcheck.PrintCerts(out, results); err != nil {
		return err
	}
	return trustcheck.CertVerdict(results)
}
