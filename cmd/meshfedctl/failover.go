package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func failoverCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "failover", Short: "Explain where a cluster's clients send a global service's traffic"}
	cmd.AddCommand(explainCommand())
	return cmd
}

func explainCommand() *cobra.Command {
	var service, cluster, zone, agent, dir string
	cmd := &cobra.Command{
		Use:   "explain --service NS/NAME --cluster CLUSTER --zone ZONE [--agent URL | --dir SANDBOX]",
		Short: "Print the priority table a client in that cluster and zone gets, and why each locality is where it is",
		Long: `Asks the agent of the client's cluster, which computes the table from its view of the
federation exactly as its xDS server does. Give the agent's address with --agent
(http://host:port of its --http-addr), or --dir to look it up in a sandbox's sandbox.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.Contains(service, "/") {
				return fmt.Errorf("--service %q: use <namespace>/<name>", service)
			}
			if agent == "" {
				s, err := sandbox.Read(dir)
				if err != nil {
					return fmt.Errorf("%w: give --agent, or --dir of a running sandbox", err)
				}
				for _, c := range s.Clusters {
					if c.Name == cluster {
						agent = "http://" + c.DebugAddr
					}
				}
				if agent == "" {
					return fmt.Errorf("no cluster %q in the sandbox in %s", cluster, dir)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			q := url.Values{"service": {service}, "zone": {zone}}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(agent, "/")+"/debug/explain?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("ask the agent of %s at %s: %w", cluster, agent, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("agent of %s: %s", cluster, strings.TrimSpace(string(body)))
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "the global service, <namespace>/<name>")
	f.StringVar(&cluster, "cluster", "", "the client's cluster")
	f.StringVar(&zone, "zone", "", "the client's zone")
	f.StringVar(&agent, "agent", "", "URL of the agent of the client's cluster (default: from --dir)")
	f.StringVar(&dir, "dir", ".meshfed", "a sandbox's directory, to find the agent")
	_ = cmd.MarkFlagRequired("service")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}
