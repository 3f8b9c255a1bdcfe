package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

// devClientIdentity is the workload identity meshfedctl dev client uses in a sandbox
// with the mesh CA.
const devClientIdentity = "meshfed-system/dev-client"

func devClientCommand() *cobra.Command {
	var (
		dir, cluster, zone, target string
		requests                   int
	)
	cmd := &cobra.Command{
		Use:   "client --cluster CLUSTER --zone ZONE --target HOST:PORT [-n N]",
		Short: "Send requests as a proxyless gRPC client in a sandbox cluster and zone, and show where they land",
		Long: `Runs a proxyless gRPC client (grpc-go's own xDS support) whose xDS server is the
agent of --cluster and whose locality is that cluster's region and --zone, dials
xds:///HOST:PORT and sends echo requests (grpc.testing.TestService/UnaryCall). Backends
that answer with their identity (package echo) show where each request landed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sandbox.Read(dir)
			if err != nil {
				return err
			}
			c := s.Cluster(cluster)
			if c == nil {
				return fmt.Errorf("no cluster %q in the sandbox in %s", cluster, dir)
			}
			if zone == "" {
				zone = c.Zones[0]
			}
			// With the sandbox's workload certificates, the client speaks mTLS as
			// meshfed-system/dev-client; without, plaintext.
			providers := ""
			creds := insecure.NewCredentials()
			if dir := filepath.Join(c.CertDir, devClientIdentity); c.CertDir != "" {
				if _, err := os.Stat(filepath.Join(dir, "tls.crt")); err != nil {
					return fmt.Errorf("no certificate for %s in %s yet: %w", devClientIdentity, dir, err)
				}
				providers = fmt.Sprintf(`, "certificate_providers": {"meshfed": {"plugin_name": "file_watcher", "config": {
"certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "10s"}}}`,
					filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"))
				if creds, err = xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()}); err != nil {
					return err
				}
			}
			bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": %s, "server_features": ["xds_v3"]}],
"node": {"id": "meshfedctl-client", "locality": {"region": %q, "zone": %q}}%s}`, c.XDSAddr, c.XDSChannelCreds(), c.Region, zone, providers)
			resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			defer conn.Close()
			landed, failed := map[string]int{}, 0
			for range requests {
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				id, err := echo.Call(ctx, conn)
				cancel()
				if err != nil {
					failed++
					continue
				}
				landed[id]++
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "client %s/%s -> xds:///%s, %d requests\n\nLANDED ON\tREQUESTS\n", cluster, zone, target, requests)
			var ids []string
			for id := range landed {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids {
				fmt.Fprintf(w, "%s\t%d\n", id, landed[id])
			}
			fmt.Fprintf(w, "failed\t%d\n", failed)
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".meshfed", "the sandbox's directory")
	f.StringVar(&cluster, "cluster", "", "the client's cluster")
	f.StringVar(&zone, "zone", "", "the client's zone (default: the cluster's first)")
	f.StringVar(&target, "target", "", "the global service, <hostname>:<port>")
	f.IntVarP(&requests, "requests", "n", 100, "how many requests to send")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}
