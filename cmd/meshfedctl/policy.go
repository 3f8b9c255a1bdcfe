package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/policyexplain"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func policyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Explain traffic and authorization policies"}
	cmd.AddCommand(policyExplainCommand())
	return cmd
}

func policyExplainCommand() *cobra.Command {
	var from, to, method, agent, dir, hubKubeconfig, output string
	var headers []string
	cmd := &cobra.Command{
		Use:   "explain --from CLUSTER/NAMESPACE/SERVICEACCOUNT --to NAMESPACE/GLOBALSERVICE [--method /pkg.Service/Method] [--header NAME=VALUE …] [--agent URL | --dir SANDBOX] [--hub-kubeconfig HUB]",
		Short: "Say whether a call would be allowed and by which rule, and which route, retries, timeout, fault, balancing and split apply",
		Long: `Explains one call from a workload identity to a method of a global service: whether
it is allowed and by which rule (an AuthorizationPolicy's rule, or the namespace's
default), and which route of the service's TrafficPolicy applies, with its retries,
timeout, fault, load balancing and split (each subset's weight and the clusters whose
endpoints it holds now).

It is computed by the code the agents' xDS builder runs (package policy), over the
records the agent of the caller's cluster serves from: its /debug/view (give its
address with --agent, or --dir to look it up in a sandbox). With --hub-kubeconfig (or
--dir) it also shows the policies' Accepted, ResolvedRefs and Programmed conditions on
the hub, and warns about each policy the agent does not serve yet.

Without --method, rules and routes that name methods do not match (a method none
names). Headers are gRPC metadata; a name given twice has two values.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req policyexplain.Request
			var err error
			if req.From, err = policyexplain.ParseFrom(from); err != nil {
				return err
			}
			if req.Namespace, req.Service, err = policyexplain.ParseTo(to); err != nil {
				return err
			}
			if req.Method, err = policyexplain.ParseMethod(method); err != nil {
				return err
			}
			if req.Headers, err = policyexplain.ParseHeaders(headers); err != nil {
				return err
			}
			if agent == "" {
				s, err := sandbox.Read(dir)
				if err != nil {
					return fmt.Errorf("%w: give --agent (the URL of the /debug of cluster %s's agent), or --dir of a running sandbox", err, req.From.Cluster)
				}
				for _, c := range s.Clusters {
					if c.Name == req.From.Cluster {
						agent = "http://" + c.DebugAddr
					}
				}
				if agent == "" {
					return fmt.Errorf("--from %s: no cluster %q in the sandbox in %s", from, req.From.Cluster, dir)
				}
				if hubKubeconfig == "" {
					hubKubeconfig = s.Hub.Kubeconfig
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 20*time.Second)
			defer cancel()
			view, err := agentView(ctx, agent, req.From.Cluster)
			if err != nil {
				return err
			}
			var hub *policyexplain.Hub
			if hubKubeconfig != "" {
				if hub, err = hubPolicies(ctx, hubKubeconfig, req.Namespace); err != nil {
					return err
				}
			}
			r, err := policyexplain.Explain(view, hub, req)
			if err != nil {
				return err
			}
			return r.Print(cmd.OutOrStdout(), output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the caller's identity, <cluster>/<namespace>/<serviceaccount>")
	f.StringVar(&to, "to", "", "the global service called, <namespace>/<name>")
	f.StringVar(&method, "method", "", "the full gRPC method called, /<package>.<Service>/<Method>")
	f.StringArrayVar(&headers, "header", nil, "gRPC metadata of the call, name=value (repeatable)")
	f.StringVar(&agent, "agent", "", "URL of the /debug of the caller's cluster's agent, http://HOST:PORT (default: from --dir)")
	f.StringVar(&dir, "dir", ".meshfed", "a sandbox's directory, to find the agent and the hub")
	f.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "kubeconfig of the hub's API server, for the policies' conditions (default: the sandbox's with --dir)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// agentView reads an agent's /debug/view.
func agentView(ctx context.Context, agent, cluster string) (*clusteragent.DebugView, error) {
	url := strings.TrimSuffix(agent, "/") + "/debug/view"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--agent %q: %w", agent, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the agent of %s at %s: %w", cluster, agent, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent of %s: %s: %s", cluster, resp.Status, strings.TrimSpace(string(body)))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%s is not an agent's view: %w", url, err)
	}
	if _, ok := raw["trafficPolicies"]; !ok {
		return nil, fmt.Errorf("the agent at %s does not serve policies (an older release): upgrade it", agent)
	}
	view := &clusteragent.DebugView{}
	if err := json.Unmarshal(body, view); err != nil {
		return nil, fmt.Errorf("%s is not an agent's view: %w", url, err)
	}
	return view, nil
}

// hubPolicies lists the hub's traffic and authorization policies of namespace.
func hubPolicies(ctx context.Context, kubeconfig, namespace string) (*policyexplain.Hub, error) {
	c, err := hubClient(kubeconfig)
	if err != nil {
		return nil, err
	}
	traffic, authz := &v1.TrafficPolicyList{}, &v1.AuthorizationPolicyList{}
	if err := c.List(ctx, traffic, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list the hub's TrafficPolicies: %w", err)
	}
	if err := c.List(ctx, authz, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list the hub's AuthorizationPolicies: %w", err)
	}
	return &policyexplain.Hub{TrafficPolicies: traffic.Items, AuthorizationPolicies: authz.Items}, nil
}
