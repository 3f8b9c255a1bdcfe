package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// checkReport is the JSON of meshfedctl check -o json.
type checkReport struct {
	Checks   []checkResult `json:"checks"`
	Failed   int           `json:"failed"`
	Warnings int           `json:"warnings"`
}

type checkResult struct {
	Group, Name, Status, Detail, Fix string
}

// Outcomes of checkResult.Status.
const (
	checkOK   = "ok"
	checkWarn = "warning"
	checkFail = "failed"
)

// runCheck runs `meshfedctl check --dir DIR -o json` and returns its report and
// whether it exited 0.
func runCheck(t *testing.T, dir string, args ...string) (*checkReport, bool) {
	t.Helper()
	cmd := exec.Command(meshfedctlBin(), append([]string{"check", "--dir", dir, "-o", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("meshfedctl check: %v\n%s", err, stderr.String())
	}
	r := &checkReport{}
	if err := json.Unmarshal(stdout.Bytes(), r); err != nil {
		t.Fatalf("meshfedctl check -o json: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	return r, err == nil
}

// checkText runs `meshfedctl check --dir DIR` for the log: what an operator sees.
func checkText(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, _ := exec.Command(meshfedctlBin(), append([]string{"check", "--dir", dir}, args...)...).CombinedOutput()
	return string(out)
}

// find is the check named name, or nil.
func find(r *checkReport, name string) *checkResult {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// notPassed lists the checks that did not pass, for messages.
func notPassed(r *checkReport) string {
	var out []string
	for _, c := range r.Checks {
		if c.Status != checkOK {
			out = append(out, fmt.Sprintf("%s %s: %s (fix: %s)", c.Status, c.Name, c.Detail, c.Fix))
		}
	}
	return strings.Join(out, "\n")
}

// TestCheck runs meshfedctl check against one sandbox with the mesh CA: every check
// passes on the healthy federation (exit 0, no warning, every group and cluster
// checked); with a warning window longer than the agents' real etcd certificates
// have left, it names each cluster's credentials as about to expire, with the fix;
// with one agent stopped, it fails (exit non-zero) naming that cluster's heartbeat
// and xDS with their fixes, and passes the others.
func TestCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Clusters: 2, MeshfedBinary: meshfedBin(), MeshCA: true, MTLS: true,
		HeartbeatTTL: 4 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)

	t.Run("healthy", func(t *testing.T) {
		start := time.Now()
		// The leading hub reports its etcd after its first check, and the mesh CA
		// signs intermediates after the agents ask: wait for both.
		var r *checkReport
		testutil.Eventually(t, 2*time.Minute, "meshfedctl check passes with no warning", func() error {
			var ok bool
			r, ok = runCheck(t, dir)
			if !ok || r.Failed > 0 || r.Warnings > 0 {
				return fmt.Errorf("exit 0: %t\n%s", ok, notPassed(r))
			}
			return nil
		})
		groups := map[string]bool{}
		for _, c := range r.Checks {
			groups[c.Group] = true
		}
		for _, g := range []string{"hub", "crds", "etcd", "clusters", "trust", "xds"} {
			if !groups[g] {
				t.Errorf("no %s check in %+v", g, r.Checks)
			}
		}
		for _, name := range []string{"meshclusters.meshfed.io", "alpha heartbeat", "beta heartbeat", "alpha credentials",
			"beta intermediate", "alpha trust bundle", "beta xDS", "alarms"} {
			if find(r, name) == nil {
				t.Errorf("no check %q", name)
			}
		}
		for _, cluster := range []string{"alpha", "beta"} {
			if c := find(r, cluster+" agent version"); c == nil || c.Status != checkOK {
				t.Errorf("%s agent version: %+v, want passed", cluster, c)
			}
		}
		t.Logf("healthy in %s:\n%s", time.Since(start).Round(time.Millisecond), checkText(t, dir))

		// meshfedctl version prints the hub's version and each agent's: the sandbox
		// runs one meshfed binary, so they are all the same build.
		out, err := exec.Command(meshfedctlBin(), "version", "--dir", dir).Output()
		if err != nil {
			t.Fatalf("meshfedctl version --dir: %v\n%s", err, out)
		}
		lines := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			k, v, _ := strings.Cut(l, ": ")
			lines[k] = v
		}
		hub := lines["hub"]
		if hub == "" || strings.HasPrefix(hub, "unknown") || lines["client"] == "" {
			t.Errorf("meshfedctl version: no client or hub version:\n%s", out)
		}
		for _, cluster := range []string{"alpha", "beta"} {
			if got := lines["agent "+cluster]; got != hub {
				t.Errorf("meshfedctl version: agent %s: %q, want the hub's %q:\n%s", cluster, got, hub, out)
			}
		}
		t.Logf("meshfedctl version:\n%s", out)
	})

	t.Run("credentials about to expire", func(t *testing.T) {
		start := time.Now()
		// The agents' real certificates live 30 days (--agent-cert-lifetime): a
		// warning window of 31 days puts every one inside it.
		r, ok := runCheck(t, dir, "--warn-before", "744h")
		if !ok {
			t.Errorf("warnings alone made check exit non-zero:\n%s", notPassed(r))
		}
		for _, cluster := range []string{"alpha", "beta"} {
			c := find(r, cluster+" credentials")
			if c == nil || c.Status != checkWarn || !strings.Contains(c.Detail, "about to expire") ||
				!strings.Contains(c.Fix, "meshfedctl cluster register "+cluster) || !strings.Contains(c.Detail, "agent's Secret") {
				t.Errorf("%s credentials: %+v, want a warning about to expire, read from the agent's Secret, with the fix", cluster, c)
			}
		}
		t.Logf("credentials in %s:\n%s", time.Since(start).Round(time.Millisecond), checkText(t, dir, "--warn-before", "744h"))
	})

	t.Run("agent stopped", func(t *testing.T) {
		start := time.Now()
		s.StopAgent("beta", syscall.SIGKILL)
		var r *checkReport
		testutil.Eventually(t, time.Minute, "meshfedctl check fails on beta's heartbeat", func() error {
			var ok bool
			r, ok = runCheck(t, dir)
			if c := find(r, "beta heartbeat"); ok || c == nil || c.Status != checkFail {
				return fmt.Errorf("exit 0: %t, beta heartbeat: %+v", ok, c)
			}
			return nil
		})
		hb := find(r, "beta heartbeat")
		if !strings.Contains(hb.Fix, "agent of beta is not heartbeating") {
			t.Errorf("beta heartbeat's fix: %q", hb.Fix)
		}
		if c := find(r, "beta xDS"); c == nil || c.Status != checkFail || c.Fix == "" {
			t.Errorf("beta xDS: %+v, want failed with a fix", c)
		}
		for _, name := range []string{"alpha heartbeat", "alpha xDS", "alpha credentials"} {
			if c := find(r, name); c == nil || c.Status != checkOK {
				t.Errorf("%s: %+v, want passed: only beta is down", name, c)
			}
		}
		for _, c := range r.Checks {
			if c.Status != checkOK && c.Fix == "" {
				t.Errorf("%s %s without a fix", c.Status, c.Name)
			}
		}
		t.Logf("agent stopped, found in %s:\n%s", time.Since(start).Round(time.Millisecond), checkText(t, dir))
	})

	// beta's agent stays down: the certificate in its Secret is what it would
	// reconnect with. Replace it with real ones from the hub's etcd client CA, for
	// the same etcd user: one about to expire, then one expired.
	t.Run("credentials in the stopped agent's Secret", func(t *testing.T) {
		start := time.Now()
		ca := hubEtcdCA(t, s)
		kube := kubernetes.NewForConfigOrDie(s.Cluster("beta").Config())
		creds, err := agentcreds.Load(ctx, kube, hubinfo.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		user := creds.User()
		for _, tc := range []struct {
			lifetime time.Duration
			want     string
			inFix    string
		}{
			{2 * time.Minute, checkWarn, "meshfedctl cluster register beta"},
			{-30 * time.Second, checkFail, "then restart the agent"}, // issued 5 minutes ago, expired 30 s ago
		} {
			certPEM, keyPEM, err := ca.Issue(pki.ClientTemplate(user), tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			if err := agentcreds.StoreCertificate(ctx, kube, hubinfo.Namespace, certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
			r, ok := runCheck(t, dir)
			c := find(r, "beta credentials")
			if ok || c == nil || c.Status != tc.want || !strings.Contains(c.Detail, "the agent's Secret") || !strings.Contains(c.Fix, tc.inFix) {
				t.Errorf("certificate of lifetime %s: exit 0: %t, beta credentials: %+v, want %s from the agent's Secret with %q in the fix",
					tc.lifetime, ok, c, tc.want, tc.inFix)
			}
		}
		t.Logf("the stopped agent's certificate expired, found in %s:\n%s", time.Since(start).Round(time.Millisecond),
			grepLines(checkText(t, dir), "beta credentials", "fix: the agent cannot"))
	})
}

// hubEtcdCA is the CA of the sandbox hub's embedded etcd, which signs agents'
// client certificates.
func hubEtcdCA(t *testing.T, s *sandbox.Sandbox) *pki.CA {
	t.Helper()
	dir := filepath.Join(s.Dir, "hub", "data", "pki")
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatalf("the hub's etcd CA: %v", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatalf("the hub's etcd CA: %v", err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// grepLines are the lines of text that contain any of subs.
func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestCompletion: meshfedctl prints completion scripts for bash, zsh and fish; bash
// parses its script and it completes meshfedctl's commands.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, err := exec.Command(meshfedctlBin(), "completion", shell).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "meshfedctl") {
			t.Fatalf("completion %s: %v\n%.300s", shell, err, out)
		}
		if shell == "bash" {
			if out, err := exec.Command("bash", "-n", "-c", string(out)).CombinedOutput(); err != nil {
				t.Errorf("bash -n on the bash completion: %v\n%s", err, out)
			}
		}
	}
	// Cobra's hidden __complete command is what every script calls.
	out, err := exec.Command(meshfedctlBin(), "__complete", "ch").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "check") {
		t.Errorf("completing \"meshfedctl ch\": %v\n%s", err, out)
	}
}
