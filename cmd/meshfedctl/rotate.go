package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
	"github.com/meshfed/meshfed/trust/meshca"
)

// defaultSettle is grpc-go's file_watcher default refresh_interval: a workload may
// take that long to use files its agent rewrote.
const defaultSettle = 10 * time.Minute

// rotatePoll is how often a waiting step looks at the clusters again.
const rotatePoll = time.Second

func trustRotateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate start|switch|finish|status",
		Short: "Rotate the mesh root in stages, each refusing to advance while any cluster lags",
		Long: `Rotate the mesh root in stages, with no certificate in use ever failing to verify:

  start    add a new root to the bundle; the old root still signs.
           Ready for switch once every cluster serves both roots and its workloads
           trust both.
  switch   sign with the new root: the hub re-signs every cluster's intermediate
           under it (same key), and each agent re-issues its workloads'
           certificates from the new intermediate.
           Ready for finish once every cluster's intermediate and workload
           certificates are under the new root.
  finish   retire the old root (its Secret is kept, labelled meshfed.io/root=false)
           and wait until every cluster serves the new root alone.
  status   where the rotation stands, per cluster, and what holds up the next step.

Each step refuses while any cluster lags, naming the cluster and why; with --wait it
first waits that long for them, and afterwards for the step's effect. Workloads read
their certificate files every refresh interval (grpc-go's file_watcher: 10m by
default): a cluster whose workloads' files changed less than --settle ago still lags.
meshfedctl trust check shows the same stages.`,
	}
	cmd.AddCommand(
		rotateStepCommand(trustcheck.StepStart, meshca.PhaseSteady, meshca.PhaseAdded, "Add a new root to every cluster's bundle (the old one still signs)",
			func(ctx context.Context, ca *meshca.Client, _ meshca.Rotation, w io.Writer) error {
				root, created, err := meshca.AddRoot(ctx, ca, meshca.RootOptions{})
				if err == nil && created {
					fmt.Fprintf(w, "added root %s (expires %s)\n", root.Secret, root.Cert.NotAfter.UTC().Format(time.RFC3339))
				}
				return err
			}),
		rotateStepCommand(trustcheck.StepSwitch, meshca.PhaseAdded, meshca.PhaseSwitched, "Sign with the new root: intermediates and workload certificates move to it",
			func(ctx context.Context, ca *meshca.Client, rot meshca.Rotation, w io.Writer) error {
				if err := meshca.SwitchSigning(ctx, ca, rot.New.Secret); err != nil {
					return err
				}
				fmt.Fprintf(w, "ClusterIssuer %s signs with %s\n", meshca.IssuerName, rot.New.Secret)
				return nil
			}),
		rotateStepCommand(trustcheck.StepFinish, meshca.PhaseSwitched, meshca.PhaseSteady, "Retire the old root from every bundle",
			func(ctx context.Context, ca *meshca.Client, rot meshca.Rotation, w io.Writer) error {
				if err := meshca.RetireRoot(ctx, ca, rot.Old.Secret); err != nil {
					return err
				}
				fmt.Fprintf(w, "retired root %s (Secret kept, labelled %s=false)\n", rot.Old.Secret, meshca.RootLabel)
				return nil
			}),
		rotateStatusCommand(),
	)
	return cmd
}

// observation is one look at the hub and the clusters.
type observation struct {
	rot     meshca.Rotation
	results []trustcheck.Result
	plan    trustcheck.Plan
	// phaseErr: the roots are in no phase of a rotation (more than two active);
	// then rot and plan are zero.
	phaseErr error
	ca       *meshca.Client
}

// observe checks every cluster and judges the rotation's phase.
func observe(ctx context.Context, hub *rest.Config, members []trustcheck.Member, settle time.Duration) (*observation, error) {
	ca, err := meshca.NewClient(hub)
	if err != nil {
		return nil, err
	}
	roots, err := meshca.Roots(ctx, ca)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	results, err := trustcheck.Check(ctx, hub, members, now)
	if err != nil {
		return nil, err
	}
	ob := &observation{results: results, ca: ca}
	if ob.rot, ob.phaseErr = meshca.Phase(roots); ob.phaseErr == nil {
		ob.plan = trustcheck.Assess(ob.rot, results, settle, now)
	}
	return ob, nil
}

// observeRotation is observe for the rotate steps, which need a phase.
func observeRotation(ctx context.Context, hub *rest.Config, members []trustcheck.Member, settle time.Duration) (*observation, error) {
	ob, err := observe(ctx, hub, members, settle)
	if err == nil {
		err = ob.phaseErr
	}
	return ob, err
}

type rotateOptions struct {
	memberFlags
	wait, settle time.Duration
}

func (o *rotateOptions) add(cmd *cobra.Command) {
	o.memberFlags.add(cmd.Flags())
	cmd.Flags().DurationVar(&o.wait, "wait", 0, "wait this long for lagging clusters before refusing, and as long for the step's effect (0: look once)")
	cmd.Flags().DurationVar(&o.settle, "settle", defaultSettle,
		"how long workloads' files must have been unchanged before a cluster counts as ready: at least your certificate providers' refresh interval")
}

// rotateStepCommand is a step: it runs only in phase from, and only once the
// clusters show from's goal; it acts, and then (with --wait) waits for to's goal.
func rotateStepCommand(name string, from, to meshca.RotationPhase, short string,
	act func(ctx context.Context, ca *meshca.Client, rot meshca.Rotation, w io.Writer) error) *cobra.Command {
	var o rotateOptions
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, members, err := o.resolve()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			ctx, cancel := context.WithTimeout(logr.NewContext(cmd.Context(), logr.Discard()), 2*o.wait+2*time.Minute)
			defer cancel()
			ob, err := waitReady(ctx, w, hub, members, o, func(ob *observation) bool { return ob.rot.Phase != from })
			if err != nil {
				return err
			}
			switch {
			case ob.rot.Phase == to:
				fmt.Fprintf(w, "rotation already %s: nothing to %s\n", to, name)
			case ob.rot.Phase != from:
				return fmt.Errorf("trust rotate %s: refusing: the rotation is %s, not %s; the next step is `meshfedctl trust rotate %s`",
					name, ob.rot.Phase, from, ob.plan.Next)
			case !ob.plan.Ready():
				trustcheck.PrintPlan(w, ob.plan)
				return fmt.Errorf("trust rotate %s: refusing: %d clusters lag (%s)", name, len(ob.plan.Lagging), lagList(ob.plan))
			default:
				if err := act(ctx, ob.ca, ob.rot, w); err != nil {
					return fmt.Errorf("trust rotate %s: %w", name, err)
				}
			}
			ob, err = waitReady(ctx, w, hub, members, o, func(*observation) bool { return false })
			if err != nil {
				return err
			}
			trustcheck.PrintPlan(w, ob.plan)
			fmt.Fprintln(w)
			if err := trustcheck.Print(w, ob.results); err != nil {
				return err
			}
			if o.wait > 0 && !ob.plan.Ready() {
				return fmt.Errorf("trust rotate %s: done, but after %s %d clusters still lag (%s); follow with `meshfedctl trust rotate status`",
					name, o.wait, len(ob.plan.Lagging), lagList(ob.plan))
			}
			return nil
		},
	}
	o.add(cmd)
	return cmd
}

// waitReady observes until the plan is ready, stop says to, or --wait has passed,
// printing what lags whenever that changes; it returns the last observation.
func waitReady(ctx context.Context, w io.Writer, hub *rest.Config, members []trustcheck.Member, o rotateOptions,
	stop func(*observation) bool) (*observation, error) {
	start := time.Now()
	deadline := start.Add(o.wait)
	var last []trustcheck.Lag
	for {
		ob, err := observeRotation(ctx, hub, members, o.settle)
		if err != nil {
			return nil, err
		}
		if ob.plan.Ready() || stop(ob) || !time.Now().Before(deadline) {
			return ob, nil
		}
		if !slices.Equal(last, ob.plan.Lagging) {
			last = ob.plan.Lagging
			fmt.Fprintf(w, "%6.1fs %s: waiting for %s\n", time.Since(start).Seconds(), ob.rot.Phase, lagList(ob.plan))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rotatePoll):
		}
	}
}

func lagList(p trustcheck.Plan) string {
	s := ""
	for i, l := range p.Lagging {
		if i > 0 {
			s += "; "
		}
		s += l.Cluster + ": " + l.Why
	}
	return s
}

// rotateStatus is `trust rotate status --output json`.
type rotateStatus struct {
	Plan     trustcheck.Plan     `json:"plan"`
	Clusters []trustcheck.Result `json:"clusters"`
}

func rotateStatusCommand() *cobra.Command {
	var (
		o      rotateOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where the rotation stands, per cluster, and what holds up the next step",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, members, err := o.resolve()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			ob, err := observeRotation(ctx, hub, members, o.settle)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(rotateStatus{Plan: ob.plan, Clusters: ob.results})
			case "", "table":
				trustcheck.PrintPlan(w, ob.plan)
				fmt.Fprintln(w)
				return trustcheck.Print(w, ob.results)
			}
			return errors.New("--output: table or json")
		},
	}
	o.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}
