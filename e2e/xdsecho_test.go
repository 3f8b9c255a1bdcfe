package e2e

import (
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// forwardFrom makes target (an address on this namespace's loopback, such as an
// agent's xDS server) reachable from inside host: it listens on this side's address of
// host's link (<subnet>.1) and relays every connection to target until the test ends.
// It returns the address processes in host dial.
func forwardFrom(t *testing.T, host *testnet.Host, target string) string {
	t.Helper()
	a := host.Addr(0).As4()
	a[3] = 1
	lis, err := net.Listen("tcp", net.JoinHostPort(netip.AddrFrom4(a).String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		open  = map[net.Conn]bool{}
		track = func(c net.Conn, add bool) bool {
			mu.Lock()
			defer mu.Unlock()
			if add && open == nil {
				return false // closing
			}
			if add {
				open[c] = true
			} else {
				delete(open, c)
			}
			return true
		}
	)
	// The relayed connections (long-lived xDS streams) end with the test, before the
	// processes in host do: close them rather than wait for them.
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		open = nil
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				if !track(in, true) || !track(out, true) {
					return
				}
				defer track(in, false)
				defer track(out, false)
				done := make(chan struct{}, 2)
				relay := func(dst, src net.Conn) {
					io.Copy(dst, src) //nolint:errcheck // ends with either side
					done <- struct{}{}
				}
				go relay(out, in)
				go relay(in, out)
				<-done // one side closed: close both
			})
		}
	})
	return lis.Addr().String()
}

// waitCertDir waits until cluster c's agent has written the workload certificate of
// identity ("<ns>/<sa>", one of the sandbox's WorkloadIdentities) and returns its
// directory.
func waitCertDir(t *testing.T, c *sandbox.Cluster, identity string) string {
	t.Helper()
	if c.CertDir == "" {
		t.Fatalf("cluster %s issues no workload certificates: run the sandbox with WorkloadIdentities", c.Name)
	}
	ns, sa, _ := strings.Cut(identity, "/")
	dir := filepath.Join(c.CertDir, ns, sa)
	testutil.Eventually(t, 2*time.Minute, c.Name+"'s workload certificate "+identity, func() error {
		for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return err
			}
		}
		return nil
	})
	return dir
}
