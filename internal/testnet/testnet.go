// Package testnet gives tests their own hosts: network namespaces, each joined to the
// test's namespace by a veth pair, with as many addresses as the test asks for.
//
// Kubernetes refuses loopback addresses in EndpointSlices, so processes that
// endpoints point at listen on a Host's addresses instead; the test process reaches
// them over the veth. Traffic never leaves the machine: the subnet (10.250.x.0/24) is
// routed only to the veth. A Host is deleted, with every process in it, when the test
// ends. It needs root (CAP_NET_ADMIN), as tests run here and in CI.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/proc"
)

// Host is a network namespace with addresses reachable from the test's namespace.
type Host struct {
	Name  string
	addrs []netip.Addr
	t     testing.TB
}

// New creates a host with n addresses and deletes it when the test ends.
func New(t testing.TB, n int) *Host {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id) //nolint:errcheck // never fails
	suffix := hex.EncodeToString(id)
	h := &Host{Name: "meshfed-" + suffix, t: t}
	outer, inner := "mfo"+suffix, "mfi"+suffix
	subnet := fmt.Sprintf("10.250.%d", int(id[0]))
	steps := [][]string{
		{"netns", "add", h.Name},
		{"link", "add", outer, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", h.Name},
		{"addr", "add", subnet + ".1/24", "dev", outer},
		{"link", "set", outer, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
		{"-n", h.Name, "link", "set", inner, "up"},
	}
	for i := range n {
		addr := netip.MustParseAddr(fmt.Sprintf("%s.%d", subnet, i+2))
		h.addrs = append(h.addrs, addr)
		steps = append(steps, []string{"-n", h.Name, "addr", "add", addr.String() + "/24", "dev", inner})
	}
	t.Cleanup(func() {
		// Deleting the namespace deletes its end of the veth pair, and so the pair.
		exec.Command("ip", "netns", "del", h.Name).Run() //nolint:errcheck
		exec.Command("ip", "link", "del", outer).Run()   //nolint:errcheck
	})
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("testnet: ip %s: %v: %s (tests need root to create network namespaces)", strings.Join(args, " "), err, out)
		}
	}
	return h
}

// Addr returns the host's i-th address.
func (h *Host) Addr(i int) netip.Addr { return h.addrs[i] }

// Addrs returns every address of the host.
func (h *Host) Addrs() []netip.Addr { return h.addrs }

// Start runs a command inside the host; it is stopped when the test ends.
func (h *Host) Start(name string, argv []string, env ...string) *proc.Process {
	h.t.Helper()
	logPath := filepath.Join(h.t.TempDir(), name+".log")
	p, err := proc.Start(name, "ip", append([]string{"netns", "exec", h.Name}, argv...), logPath, env...)
	if err != nil {
		h.t.Fatalf("testnet: %v", err)
	}
	h.t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}
