package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/status"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/register"
)

func clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Register, revoke, unregister and list member clusters"}
	cmd.AddCommand(registerCommand(), unregisterCommand(), revokeCommand(), listCommand())
	return cmd
}

func registerCommand() *cobra.Command {
	var (
		opts                      register.Options
		hubKubeconfig, kubeconfig string
		gateways                  []string
	)
	cmd := &cobra.Command{
		Use:   "register NAME --region REGION --zones Z1,Z2 --kubeconfig MEMBER --hub-kubeconfig HUB",
		Short: "Join a member cluster to the federation (idempotent)",
		Long: `Creates the cluster's MeshCluster on the hub, installs the agent's namespace and RBAC
in the member cluster, and stores the agent's etcd credentials there: the key is made here
and only a CSR goes to the hub, which signs it. Running it again with the same settings
changes nothing; credentials are renewed when a third of their life is left.

The address ranges are what every reader accepts the cluster's endpoints in. Without
--address-ranges they are discovered (nodes' spec.podCIDRs, ServiceCIDR objects) and
printed; check them. Given again, they replace the registered ones.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Cluster = args[0]
			var err error
			if opts.Hub, err = cmdutil.RESTConfig(hubKubeconfig); err != nil {
				return err
			}
			if opts.Member, err = cmdutil.RESTConfig(kubeconfig); err != nil {
				return err
			}
			if opts.Gateways, err = parseGateways(gateways); err != nil {
				return err
			}
			opts.Progress = cmd.OutOrStdout()
			return register.Register(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Region, "region", "", "the cluster's region (topology.kubernetes.io/region)")
	f.StringSliceVar(&opts.Zones, "zones", nil, "the cluster's zones (topology.kubernetes.io/zone), comma-separated")
	f.StringVar(&opts.Network, "network", v1.DefaultNetwork, "the flat network the cluster's pods are on")
	f.StringSliceVar(&gateways, "gateway", nil, "east-west gateway address[:port] reachable from other networks (repeatable)")
	f.StringSliceVar(&opts.AddressRanges, "address-ranges", nil, "CIDRs the cluster's endpoints may use, comma-separated (its pod and service CIDRs); "+
		"default: discovered from its nodes' podCIDRs and ServiceCIDRs; \"any\" for any routable address")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the member cluster")
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "how long to wait for each step")
	_ = cmd.MarkFlagRequired("region")
	_ = cmd.MarkFlagRequired("zones")
	_ = cmd.MarkFlagRequired("hub-kubeconfig")
	return cmd
}

func parseGateways(in []string) ([]v1.GatewayAddress, error) {
	var out []v1.GatewayAddress
	for _, g := range in {
		host, port := g, v1.DefaultGatewayPort
		if h, p, err := net.SplitHostPort(g); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("--gateway %q: port must be 1-65535", g)
			}
			host, port = h, n
		}
		out = append(out, v1.GatewayAddress{Address: strings.ToLower(host), Port: int32(port)})
	}
	return out, nil
}

func unregisterCommand() *cobra.Command {
	var (
		opts                      register.UnregisterOptions
		hubKubeconfig, kubeconfig string
	)
	cmd := &cobra.Command{
		Use:   "unregister NAME --hub-kubeconfig HUB [--kubeconfig MEMBER]",
		Short: "Remove a member cluster: its MeshCluster, etcd user and keys, and (with --kubeconfig) the agent's objects",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Cluster = args[0]
			var err error
			if opts.Hub, err = cmdutil.RESTConfig(hubKubeconfig); err != nil {
				return err
			}
			if kubeconfig != "" {
				if opts.Member, err = cmdutil.RESTConfig(kubeconfig); err != nil {
					return err
				}
			}
			opts.Progress = cmd.OutOrStdout()
			return register.Unregister(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the member cluster, to remove the agent's objects there too")
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "how long to wait for the hub")
	_ = cmd.MarkFlagRequired("hub-kubeconfig")
	return cmd
}

func revokeCommand() *cobra.Command {
	var (
		opts          register.RevokeOptions
		hubKubeconfig string
	)
	cmd := &cobra.Command{
		Use:   "revoke NAME --hub-kubeconfig HUB",
		Short: "Cut a member cluster off at once, keeping its MeshCluster: etcd refuses its credentials until it is registered again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Cluster = args[0]
			var err error
			if opts.Hub, err = cmdutil.RESTConfig(hubKubeconfig); err != nil {
				return err
			}
			opts.Progress = cmd.OutOrStdout()
			return register.Revoke(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "how long to wait for the hub")
	_ = cmd.MarkFlagRequired("hub-kubeconfig")
	return cmd
}

func listCommand() *cobra.Command {
	return reportCommand("list", "List member clusters with their conditions, heartbeat age and counts", false)
}

func statusCommand() *cobra.Command {
	return reportCommand("status", "Show every member cluster and global service as the hub sees them", true)
}

func reportCommand(use, short string, withServices bool) *cobra.Command {
	var hubKubeconfig, output string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, err := hubClient(hubKubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			r, err := status.Collect(ctx, hub, time.Now(), withServices)
			if err != nil {
				return err
			}
			return r.Print(cmd.OutOrStdout(), output)
		},
	}
	cmd.Flags().StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func hubClient(kubeconfig string) (client.Client, error) {
	cfg, err := cmdutil.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return hubinfo.NewClient(cfg)
}
