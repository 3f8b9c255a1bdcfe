package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cmdutil"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

func devCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Run a local sandbox federation on this machine"}
	cmd.AddCommand(devUpCommand(), devDownCommand(), devClientCommand(), devDemoCommand(), devEchoCommand(), devBenchFleetCommand(),
		devBenchGatewayCommand(), devSpliceProxyCommand())
	return cmd
}

func devUpCommand() *cobra.Command {
	var (
		opts    sandbox.Options
		meshfed string
	)
	cmd := &cobra.Command{
		Use:   "up [--clusters N] [--dir DIR]",
		Short: "Start a hub and N member clusters (real kube-apiservers and etcd) with an agent each; Ctrl-C stops it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if existing, err := sandbox.Read(opts.Dir); err == nil && alive(existing.PID) {
				return fmt.Errorf("a sandbox is already running in %s (pid %d): meshfedctl dev down --dir %s", opts.Dir, existing.PID, opts.Dir)
			}
			bin, err := meshfedBinary(meshfed)
			if err != nil {
				return err
			}
			opts.MeshfedBinary = bin
			opts.Progress = out
			ctx, stop := cmdutil.SignalContext()
			defer stop()
			s, err := sandbox.Up(ctx, opts)
			if err != nil {
				return err
			}
			defer s.Down()
			printSummary(s)
			<-ctx.Done()
			fmt.Fprintln(out, "stopping the sandbox...")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Clusters, "clusters", 3, "number of member clusters (two regions)")
	f.BoolVar(&opts.MeshCA, "mesh-ca", true, "run the mesh CA on the hub (cert-manager's controllers) and give every cluster an intermediate")
	f.BoolVar(&opts.SeparateNetwork, "separate-network", true, "put the last cluster on a network of its own, reached through its east-west gateway")
	f.BoolVar(&opts.MTLS, "mtls", true, "mTLS between proxies and endpoints (needs --mesh-ca for the certificates)")
	f.StringSliceVar(&opts.WorkloadIdentities, "workload-identities", []string{devClientIdentity},
		"workload identities (<ns>/<sa>) the agents issue certificates for, into each cluster's certs/ directory")
	f.StringVar(&opts.Dir, "dir", ".meshfed", "directory for kubeconfigs, data, logs and sandbox.json")
	f.StringVar(&meshfed, "meshfed", "", "the meshfed binary (default: next to meshfedctl, else on PATH)")
	return cmd
}

func printSummary(s *sandbox.Sandbox) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nCLUSTER\tREGION\tZONES\tNETWORK\tKUBECONFIG\tXDS\tGATEWAY\tAGENT")
	fmt.Fprintf(w, "hub\t\t\t\t%s\t\t\tetcd %s\n", rel(s.Hub.Kubeconfig), s.Hub.Etcd[0])
	for _, c := range s.Clusters {
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s\t%s\thttp://%s/debug/view\n", c.Name, c.Region, c.Zones, c.Network,
			rel(c.Kubeconfig), c.XDSAddr, c.GatewayAddr, c.DebugAddr)
	}
	w.Flush()
	kubectl := "kubectl"
	if dir, err := localkube.Assets(); err == nil {
		kubectl = filepath.Join(dir, "kubectl")
	}
	fmt.Printf("\nThe hub's web console: http://%s/\n", s.Hub.Replicas[0].ConsoleAddr)
	fmt.Printf("\nThe sandbox is ready. Try:\n  %s --kubeconfig %s get meshclusters\n  meshfedctl status --hub-kubeconfig %s\n"+
		"Logs are in %s. Ctrl-C (or meshfedctl dev down) stops everything.\n",
		kubectl, rel(s.Hub.Kubeconfig), rel(s.Hub.Kubeconfig), rel(filepath.Join(s.Dir, "logs")))
}

func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && len(r) < len(path) {
		return r
	}
	return path
}

func devDownCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down [--dir DIR]",
		Short: "Stop a sandbox started with dev up, and every process it started",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sandbox.Read(dir)
			if err != nil {
				return err
			}
			if !alive(s.PID) {
				os.Remove(filepath.Join(dir, sandbox.File))
				fmt.Fprintf(cmd.OutOrStdout(), "the sandbox in %s was not running (removed its stale %s)\n", dir, sandbox.File)
				return nil
			}
			// dev up stops everything on SIGTERM; its children die with it in any case.
			_ = syscall.Kill(s.PID, syscall.SIGTERM)
			deadline := time.Now().Add(60 * time.Second)
			for alive(s.PID) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(s.PID, syscall.SIGKILL)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped the sandbox in %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".meshfed", "the sandbox's directory")
	return cmd
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// meshfedBinary finds the meshfed executable: the flag, then next to meshfedctl, then
// on PATH.
func meshfedBinary(flag string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	if self, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(self), "meshfed")
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
	}
	if path, err := exec.LookPath("meshfed"); err == nil {
		return filepath.Abs(path)
	}
	return "", errors.New("no meshfed binary next to meshfedctl or on PATH: run make build, or pass --meshfed")
}
