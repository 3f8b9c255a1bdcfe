package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/version"
)

// versions is what meshfedctl version prints; -o json prints it as is. Hub and
// Agents are empty when the hub was not asked or could not be read.
type versions struct {
	Client string `json:"client"`
	// Hub is the hub's build from its ConfigMap; "" from a hub that predates it.
	Hub    string         `json:"hub,omitempty"`
	Agents []agentVersion `json:"agents,omitempty"`
	// hubRead: Hub and Agents are the hub's answer.
	hubRead bool
}

type agentVersion struct {
	Cluster string `json:"cluster"`
	// Version is the build the agent reported in its heartbeat (MeshCluster
	// status.agentVersion); "" while unknown.
	Version string `json:"version,omitempty"`
}

// versionTimeout bounds the reads of the hub.
const versionTimeout = 15 * time.Second

func versionCommand() *cobra.Command {
	var hubKubeconfig, dir, output string
	cmd := &cobra.Command{
		Use:   "version [--hub-kubeconfig HUB | --dir SANDBOX] [-o text|json]",
		Short: "Print meshfedctl's version and, given the hub, the hub's and every registered cluster's agent's",
		Long: `Print meshfedctl's version and, given the hub (--hub-kubeconfig, or --dir of a
sandbox), the hub's (from its ConfigMap) and each registered cluster's agent's (as its
last heartbeat said, MeshCluster status.agentVersion). A version is the release,
commit, Go version and platform of the build. Without a hub only the client's is
printed. When the hub was given but cannot be read, the client's version is printed,
the reason on stderr, and the command exits non-zero.

meshfedctl check warns when an agent runs another release than the hub.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: use text or json", output)
			}
			v := versions{Client: version.String()}
			var err error
			switch {
			case hubKubeconfig != "" && dir != "":
				return errors.New("give --hub-kubeconfig or --dir, not both")
			case dir != "":
				var s *sandbox.Sandbox
				if s, err = sandbox.Read(dir); err == nil {
					hubKubeconfig = s.Hub.Kubeconfig
				}
			case hubKubeconfig == "":
				fmt.Fprintln(cmd.ErrOrStderr(), "hub and agents: not asked; give --hub-kubeconfig HUB (or --dir SANDBOX) to print their versions")
			}
			if err == nil && hubKubeconfig != "" {
				ctx, cancel := context.WithTimeout(cmd.Context(), versionTimeout)
				defer cancel()
				err = hubVersions(ctx, hubKubeconfig, &v)
			}
			if perr := printVersions(cmd.OutOrStdout(), v, output); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("hub and agents' versions: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server")
	f.StringVar(&dir, "dir", "", "use the hub of the sandbox in DIR instead")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// hubVersions fills v's hub and agents from the hub's ConfigMap and MeshClusters.
func hubVersions(ctx context.Context, kubeconfig string, v *versions) error {
	cfg, err := cmdutil.RESTConfig(kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = versionTimeout
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	info, err := hubinfo.Read(ctx, kube)
	if err != nil {
		return err
	}
	hub, err := hubinfo.NewClient(cfg)
	if err != nil {
		return err
	}
	list := &v1.MeshClusterList{}
	if err := hub.List(ctx, list); err != nil {
		return fmt.Errorf("list MeshClusters: %w", err)
	}
	v.Hub = info.Version
	for _, mc := range list.Items {
		v.Agents = append(v.Agents, agentVersion{Cluster: mc.Name, Version: mc.Status.AgentVersion})
	}
	slices.SortFunc(v.Agents, func(a, b agentVersion) int { return strings.Compare(a.Cluster, b.Cluster) })
	v.hubRead = true
	return nil
}

const (
	unknownHub   = "unknown (the hub predates version reports)"
	unknownAgent = "unknown (the agent has not reported it: not running, or older than version reports)"
)

func printVersions(w io.Writer, v versions, format string) error {
	if format == "json" {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(v)
	}
	fmt.Fprintf(w, "client: meshfedctl %s\n", v.Client)
	if v.hubRead {
		s := v.Hub
		if s == "" {
			s = unknownHub
		}
		fmt.Fprintf(w, "hub: %s\n", s)
	}
	for _, a := range v.Agents {
		s := a.Version
		if s == "" {
			s = unknownAgent
		}
		fmt.Fprintf(w, "agent %s: %s\n", a.Cluster, s)
	}
	return nil
}
