package fleetbench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/localkube"
)

// TestQuickRun runs the benchmark on a tiny fleet: every phase completes against a
// real etcd, a real kube-apiserver and a real agent, every change reaches every
// stream, and the table has every row. It asserts no timing.
func TestQuickRun(t *testing.T) {
	if _, err := localkube.Assets(); err != nil {
		t.Skipf("no Kubernetes binaries: %v (run make test, or export MESHFED_ASSETS)", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshfed")
	build := exec.Command("go", "build", "-o", bin, "github.com/meshfed/meshfed/cmd/meshfed")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build meshfed: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := Quick
	o.Dir, o.MeshfedBinary, o.Out = filepath.Join(dir, "run"), bin, testWriter{t}
	res, err := Run(ctx, o)
	if err != nil {
		if log, rerr := os.ReadFile(filepath.Join(o.Dir, "agent.log")); rerr == nil {
			t.Logf("agent log:\n%s", tail(string(log), 4000))
		}
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Logf("\n%s", out.String())
	if res.ChurnUnseen != 0 {
		t.Errorf("%d churn changes never reached every stream", res.ChurnUnseen)
	}
	if res.Bootstrap <= 0 || res.RSS <= 0 || res.FanoutP99 <= 0 || res.LightP50 <= 0 {
		t.Errorf("a phase measured nothing: %+v", res)
	}
	if n := strings.Count(out.String(), "\n"); n < 13 {
		t.Errorf("table has %d lines, want a row per figure:\n%s", n, out.String())
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(Env.Clusters, "7")
	t.Setenv(Env.Duration, "3s")
	o, err := FromEnv(Defaults)
	if err != nil || o.Clusters != 7 || o.Duration != 3*time.Second || o.Services != Defaults.Services {
		t.Fatalf("FromEnv = %+v, %v", o, err)
	}
	t.Setenv(Env.Streams, "many")
	if _, err := FromEnv(Defaults); err == nil || !strings.Contains(err.Error(), Env.Streams) {
		t.Fatalf("FromEnv with a bad number: %v, want an error naming %s", err, Env.Streams)
	}
	bad := Defaults
	bad.Dir, bad.MeshfedBinary, bad.Clusters = "d", "b", 300
	if err := bad.setDefaults(); err == nil || !strings.Contains(err.Error(), Env.Clusters) {
		t.Fatalf("300 clusters: %v, want an error naming %s", err, Env.Clusters)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
