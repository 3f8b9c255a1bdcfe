package gwbench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/meshfed/meshfed/internal/dev/proc"
)

// Cores the run pins to: the proxies to proxyCPU, the benchmark (backends and load
// client) to loadCPU.
const (
	loadCPU  = "0"
	proxyCPU = "1"
)

// pinning decides whether the run can pin, and why not when it cannot.
func pinning(noPin bool) (taskset, why string) {
	switch {
	case noPin:
		return "", "not pinned (--no-pin)"
	case runtime.NumCPU() < 2:
		return "", fmt.Sprintf("not pinned: this process may use %d CPU", runtime.NumCPU())
	}
	path, err := exec.LookPath("taskset")
	if err != nil {
		return "", "not pinned: no taskset on PATH (util-linux)"
	}
	return path, ""
}

// pinSelf pins every thread of this process to cpu and returns what restores the
// affinity it had. Threads started later inherit it from the thread that starts them.
func pinSelf(taskset, cpu string) (restore func(), err error) {
	pid := strconv.Itoa(os.Getpid())
	out, err := exec.Command(taskset, "-p", pid).Output()
	if err != nil {
		return nil, fmt.Errorf("taskset -p %s: %w", pid, err)
	}
	// "pid 123's current affinity mask: 3"
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return nil, fmt.Errorf("taskset -p %s: unexpected output %q", pid, out)
	}
	mask := fields[len(fields)-1]
	if out, err := exec.Command(taskset, "-a", "-p", "-c", cpu, pid).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("taskset -a -p -c %s %s: %w: %s (pass --no-pin on a machine without CPUs 0 and 1)", cpu, pid, err, out)
	}
	return func() { exec.Command(taskset, "-a", "-p", mask, pid).Run() }, nil //nolint:errcheck // best effort
}

// start runs argv as its own process, on cpu when taskset is set, logging to
// dir/name.log.
func start(dir, name, taskset, cpu string, argv, env []string) (*proc.Process, error) {
	path, args := argv[0], argv[1:]
	if taskset != "" {
		path, args = taskset, append([]string{"-c", cpu}, argv...)
	}
	return proc.Start(name, path, args, dir+"/"+name+".log", env...)
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// spliceAddrs waits for the splice proxy's log to name where it listens, one address
// per forward, in order.
func spliceAddrs(p *proc.Process, n int, within time.Duration) ([]string, error) {
	deadline := time.Now().Add(within)
	for {
		var addrs []string
		if f, err := os.Open(p.LogPath); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), SpliceListening+" "); ok {
					addrs = append(addrs, strings.Fields(rest)[0])
				}
			}
			f.Close()
		}
		switch {
		case len(addrs) >= n:
			return addrs[:n], nil
		case p.Exited():
			return nil, p.Failure()
		case time.Now().After(deadline):
			return nil, fmt.Errorf("the splice proxy did not say where it listens within %v (log %s)", within, p.LogPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loadAverage is the 1-minute load average, or "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Fields(string(b))[0]
}
