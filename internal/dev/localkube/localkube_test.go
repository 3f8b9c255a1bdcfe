package localkube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// helperEnv makes the test binary act as an owner process that starts a control plane,
// reports its children's PIDs and then dies the way the variable says.
const helperEnv = "LOCALKUBE_TEST_OWNER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runOwner(mode)
		return
	}
	os.Exit(m.Run())
}

// runOwner starts a control plane, writes "<etcd pid> <apiserver pid>" to stdout, then
// panics or waits to be killed.
func runOwner(mode string) {
	cp, err := Start(context.Background(), Options{Name: "owner", Dir: os.Getenv("LOCALKUBE_TEST_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("%d %d\n", cp.etcd.Pid(), cp.apiserver.Pid())
	os.Stdout.Sync()
	switch mode {
	case "panic":
		panic("owner panics with a control plane running")
	default: // wait for SIGKILL
		select {}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TestNoProcessOutlivesItsOwner kills an owner process, by panic and by SIGKILL, and
// checks that its etcd and kube-apiserver die with it.
func TestNoProcessOutlivesItsOwner(t *testing.T) {
	if _, err := Assets(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"panic", "sigkill"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, "LOCALKUBE_TEST_DIR="+t.TempDir())
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var etcdPID, apiPID int
			if _, err := fmt.Fscan(stdout, &etcdPID, &apiPID); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("owner did not report its children: %v", err)
			}
			if !alive(etcdPID) || !alive(apiPID) {
				t.Fatalf("children not running after start")
			}
			if mode == "sigkill" {
				cmd.Process.Kill()
			}
			cmd.Wait()
			t.Cleanup(func() { // in case they outlive it: the test fails, the machine stays clean
				syscall.Kill(etcdPID, syscall.SIGKILL)
				syscall.Kill(apiPID, syscall.SIGKILL)
			})
			testutil.Eventually(t, 30*time.Second, "etcd and kube-apiserver to die with their owner", func() error {
				if alive(etcdPID) || alive(apiPID) {
					return fmt.Errorf("etcd (%d) or kube-apiserver (%d) outlived its owner", etcdPID, apiPID)
				}
				return nil
			})
		})
	}
}

// TestControlPlane checks a started control plane from the outside: its kubeconfig
// works, RBAC applies to other users, and Stop ends both processes.
func TestControlPlane(t *testing.T) {
	ctx := context.Background()
	cp, err := Start(ctx, Options{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)

	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(cfg)
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("admin via kubeconfig: %v", err)
	}
	version, err := admin.Discovery().ServerVersion()
	if err != nil || !strings.HasPrefix(version.GitVersion, "v1.") {
		t.Errorf("server version = %v, %v; want a stamped v1.x version", version, err)
	}

	userCfg, err := cp.UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubernetes.NewForConfigOrDie(userCfg).CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("user without RBAC listed secrets: err = %v, want forbidden", err)
	}

	pids := []int{cp.etcd.Pid(), cp.apiserver.Pid()}
	cp.Stop()
	cp.Stop() // idempotent
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(cp.Dir, "etcd.log")); err != nil {
		t.Errorf("etcd log: %v", err)
	}
}
