package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/localkube"
)

// TestDevUpDown runs the README's sandbox the way a newcomer does: meshfedctl dev up
// prints its summary, kubectl on the hub shows every cluster Connected, and dev down
// leaves no process behind.
func TestDevUpDown(t *testing.T) {
	dir := t.TempDir()
	up := exec.Command(meshfedctlBin(), "dev", "up", "--dir", dir, "--clusters", "3")
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	up.Stderr = os.Stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var output bytes.Buffer
	ready := make(chan struct{})
	go func() {
		scan := bufio.NewScanner(stdout)
		for scan.Scan() {
			output.WriteString(scan.Text() + "\n")
			if strings.HasPrefix(scan.Text(), "The sandbox is ready") {
				close(ready)
			}
		}
		exited <- up.Wait()
	}()
	t.Cleanup(func() { up.Process.Kill() })
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("dev up exited early: %v\n%s", err, output.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("dev up not ready after 5 minutes:\n%s", output.String())
	}
	for _, want := range []string{"CLUSTER", "alpha", "beta", "gamma", "hub.kubeconfig", "/debug/view"} {
		if !strings.Contains(output.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, output.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); err != nil {
		t.Errorf("sandbox.json: %v", err)
	}

	assets, err := localkube.Assets()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", filepath.Join(dir, "hub.kubeconfig"),
		"get", "meshclusters", "-o", "custom-columns=NAME:.metadata.name,CONNECTED:.status.conditions[?(@.type==\"Connected\")].status",
		"--no-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get meshclusters: %v\n%s", err, out)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != "alpha True beta True gamma True" {
		t.Errorf("kubectl get meshclusters: %q, want every cluster Connected=True", got)
	}

	down, err := exec.Command(meshfedctlBin(), "dev", "down", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("dev down: %v\n%s", err, down)
	}
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		t.Fatal("dev up still running after dev down")
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes left behind after dev down:\n%s", strings.Join(left, "\n"))
	}
}

// processesMentioning lists the command lines of running processes that name path.
func processesMentioning(path string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(path)) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if bytes.Contains(stat, []byte(") Z ")) { // a zombie waiting for its parent is gone
			continue
		}
		out = append(out, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return out
}
