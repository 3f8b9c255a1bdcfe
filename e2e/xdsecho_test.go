package e2e

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/netlink"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// forwardFrom makes target (an address on this namespace's loopback, such as an
// agent's xDS server) reachable from inside host: a link (package netlink) on this
// side's address of host's veth (<subnet>.1) carries every connection to target until
// the test ends. It returns the address processes in host dial.
func forwardFrom(t *testing.T, host *testnet.Host, target string) string {
	t.Helper()
	a := host.Addr(0).As4()
	a[3] = 1
	l, err := netlink.Listen(net.JoinHostPort(netip.AddrFrom4(a).String(), "0"), target)
	if err != nil {
		t.Fatal(err)
	}
	// The relayed connections (long-lived xDS streams) end with the test, before the
	// processes in host do: Close closes them rather than waiting for them.
	t.Cleanup(func() { l.Close() })
	return l.Addr()
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
