package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/cmd/meshfedctl/internal/trustcheck"
)

// Status is a check's outcome.
type Status string

// Outcomes.
const (
	OK   Status = "ok"
	Warn Status = "warning"
	Fail Status = "failed"
)

// Groups, in the order they are printed.
const (
	GroupHub      = "hub"
	GroupCRDs     = "crds"
	GroupEtcd     = "etcd"
	GroupClusters = "clusters"
	GroupTrust    = "trust"
	GroupXDS      = "xds"
)

// DefaultWarnBefore is how long before a certificate's expiry a check warns.
const DefaultWarnBefore = 7 * 24 * time.Hour

// Result is one check.
type Result struct {
	Group string `json:"group"`
	// Name says what is checked ("alpha heartbeat").
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail is what was found.
	Detail string `json:"detail"`
	// Fix is what to do; set on every warning and failure.
	Fix string `json:"fix,omitempty"`
	// Cluster is the member cluster the check is about, if any.
	Cluster string `json:"cluster,omitempty"`
}

// Report is every check, in groups.
type Report struct {
	Checks []Result `json:"checks"`
	// Failed and Warnings count the checks that did not pass.
	Failed   int `json:"failed"`
	Warnings int `json:"warnings"`
}

// Options say what to check and how to reach it.
type Options struct {
	// Hub is the hub's API server.
	Hub *rest.Config
	// Members are the member clusters that can be reached (their kubeconfigs).
	Members []trustcheck.Member
	// Agents are the base URLs (http://host:port) where agents serve /debug/view and
	// /metrics, by cluster.
	Agents map[string]string
	// HubMetrics are the URLs of the hub replicas' metrics listeners
	// (http://host:port); the leading replica reports etcd.
	HubMetrics []string
	// WarnBefore: warn when a certificate expires within this. Default
	// DefaultWarnBefore.
	WarnBefore time.Duration
	// Now is the time certificates and heartbeats are judged at. Default time.Now().
	Now time.Time
	// HTTP fetches agents' and the hub's endpoints. Default: a client with a 5s
	// timeout.
	HTTP *http.Client
}

// Run makes every check. Only a bad option is an error; what cannot be reached is
// a failed check.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Hub == nil {
		return nil, errors.New("check: no hub: give --hub-kubeconfig or --dir")
	}
	if opts.WarnBefore <= 0 {
		opts.WarnBefore = DefaultWarnBefore
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	r := &Report{Checks: []Result{}}
	h, ok := checkHub(ctx, r, opts)
	if ok {
		checkCRDs(ctx, r, h)
		checkEtcd(ctx, r, h, opts)
		clusters := checkClusters(ctx, r, h, opts)
		checkTrust(ctx, r, clusters, opts)
		checkXDS(ctx, r, clusters, opts)
	}
	for _, c := range r.Checks {
		switch c.Status {
		case Fail:
			r.Failed++
		case Warn:
			r.Warnings++
		}
	}
	return r, nil
}

func (r *Report) add(res Result) { r.Checks = append(r.Checks, res) }

func (r *Report) ok(group, name, detail string) {
	r.add(Result{Group: group, Name: name, Status: OK, Detail: detail})
}

func (r *Report) warn(group, name, detail, fix string) {
	r.add(Result{Group: group, Name: name, Status: Warn, Detail: detail, Fix: fix})
}

func (r *Report) fail(group, name, detail, fix string) {
	r.add(Result{Group: group, Name: name, Status: Fail, Detail: detail, Fix: fix})
}

// Err is nil unless a check failed.
func (r *Report) Err() error {
	if r.Failed > 0 {
		return fmt.Errorf("checks failed: %d", r.Failed)
	}
	return nil
}

var marks = map[Status]string{OK: "✓", Warn: "⚠", Fail: "✗"}

var titles = map[string]string{
	GroupHub: "hub", GroupCRDs: "CRDs", GroupEtcd: "hub etcd", GroupClusters: "clusters", GroupTrust: "trust", GroupXDS: "xDS",
}

// Print writes the report as text (a section per group, a line per check and a
// "fix:" line under each one that did not pass) or as json.
func (r *Report) Print(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "", "text":
	default:
		return fmt.Errorf("output format %q: use text or json", format)
	}
	group := ""
	for _, c := range r.Checks {
		if c.Group != group {
			if group != "" {
				fmt.Fprintln(w)
			}
			group = c.Group
			fmt.Fprintln(w, titles[group])
		}
		fmt.Fprintf(w, "  %s %s: %s\n", marks[c.Status], c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintln(w)
	switch {
	case r.Failed > 0:
		fmt.Fprintf(w, "failed: %d, warnings: %d, passed: %d\n", r.Failed, r.Warnings, len(r.Checks)-r.Failed-r.Warnings)
	case r.Warnings > 0:
		fmt.Fprintf(w, "all checks passed, with %d warnings\n", r.Warnings)
	default:
		fmt.Fprintf(w, "all %d checks passed\n", len(r.Checks))
	}
	return nil
}
