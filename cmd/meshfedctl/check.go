package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/check"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func checkCommand() *cobra.Command {
	var (
		m          memberFlags
		agents     []string
		hubMetrics []string
		warnBefore time.Duration
		output     string
	)
	cmd := &cobra.Command{
		Use:   "check --hub-kubeconfig HUB [--cluster NAME=KUBECONFIG …] [--agent NAME=URL …] [--hub-metrics URL] | --dir SANDBOX",
		Short: "Check the federation: hub, CRDs, the hub's etcd, every cluster, trust and xDS; each failure with its fix",
		Long: `Checks the federation and prints each check as ✓ (passed), ⚠ (warning) or ✗ (failed),
with the fix under every one that did not pass. It exits non-zero when a check failed.

  hub       the hub's API server answers; the hub has published its ConfigMap
            (with its version)
  CRDs      each CRD this meshfedctl ships is installed, served and has its schema
  hub etcd  members, database size against the quota, alarms (from the hub's
            /metrics, --hub-metrics); the hub's recent etcd Warning Events
  clusters  for every MeshCluster: registration, heartbeat, the agent's version
            (failure when unknown, warning when another release than the hub's), initial publish,
            published data, the agent's etcd credentials (warning within
            --warn-before of expiry, failure once expired) and intermediate
  trust     each cluster serves the hub's roots and its intermediate chains to one
            (meshfedctl trust check; needs --cluster NAME=KUBECONFIG)
  xDS       each agent serves a live view, proxies connected, rejected responses,
            remote gateways (needs --agent NAME=URL of its /debug and /metrics)

What cannot be checked for want of a kubeconfig or an address is a warning naming
the flag to give. --dir takes everything from a sandbox's sandbox.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := check.Options{WarnBefore: warnBefore, Agents: map[string]string{}, HubMetrics: hubMetrics}
			if m.dir != "" {
				s, err := sandbox.Read(m.dir)
				if err != nil {
					return err
				}
				for _, c := range s.Clusters {
					opts.Agents[c.Name] = "http://" + c.DebugAddr
				}
				for _, r := range s.Hub.Replicas {
					opts.HubMetrics = append(opts.HubMetrics, "http://"+r.MetricsAddr)
				}
			}
			for _, a := range agents {
				name, url, ok := strings.Cut(a, "=")
				if !ok || name == "" || !strings.HasPrefix(url, "http") {
					return fmt.Errorf("--agent %q: use NAME=http://HOST:PORT", a)
				}
				opts.Agents[name] = url
			}
			var err error
			if opts.Hub, opts.Members, err = m.resolve(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			report, err := check.Run(ctx, opts)
			if err != nil {
				return err
			}
			if err := report.Print(cmd.OutOrStdout(), output); err != nil {
				return err
			}
			return report.Err()
		},
	}
	m.add(cmd.Flags())
	f := cmd.Flags()
	f.StringArrayVar(&agents, "agent", nil, "NAME=URL where the cluster's agent serves /debug/view and /metrics (repeatable)")
	f.StringArrayVar(&hubMetrics, "hub-metrics", nil, "URL of a hub replica's --metrics-addr, http://HOST:PORT (repeatable)")
	f.DurationVar(&warnBefore, "warn-before", check.DefaultWarnBefore, "warn about certificates that expire within this")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
