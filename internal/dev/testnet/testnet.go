package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/proc"
)

// Range holds every address a Host is given (10.250.x.0/24): the address range
// sandbox clusters are registered with.
const Range = "10.250.0.0/16"

// claimed are the subnets this process's hosts hold, between picking one and its
// route existing, and until Close.
var (
	claimedMu sync.Mutex
	claimed   = map[string]bool{}
)

func claim(subnet string) bool {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	if claimed[subnet] {
		return false
	}
	claimed[subnet] = true
	return true
}

func release(subnet string) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	delete(claimed, subnet)
}

// Host is a network namespace with addresses reachable from the caller's namespace.
type Host struct {
	Name   string
	subnet string
	addrs  []netip.Addr
	outer  string
	logDir string
	procs  []*proc.Process
}

// NewHost creates a host with n addresses; logs of processes started in it go to
// logDir. Close it when done.
func NewHost(n int, logDir string) (*Host, error) {
	id := make([]byte, 3)
	subnet := ""
	for range 1000 {
		rand.Read(id) //nolint:errcheck // never fails
		// A subnet another host (of this process or another) routes would make two
		// hosts answer for one address: pick one no interface routes.
		candidate := fmt.Sprintf("10.250.%d", int(id[0]))
		out, err := exec.Command("ip", "-4", "route", "show", candidate+".0/24").Output()
		if err == nil && len(strings.TrimSpace(string(out))) == 0 && claim(candidate) {
			subnet = candidate
			break
		}
	}
	if subnet == "" {
		return nil, fmt.Errorf("testnet: no free subnet in %s", Range)
	}
	suffix := hex.EncodeToString(id)
	h := &Host{Name: "meshfed-" + suffix, outer: "mfo" + suffix, logDir: logDir, subnet: subnet}
	inner := "mfi" + suffix
	steps := [][]string{
		{"netns", "add", h.Name},
		{"link", "add", h.outer, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", h.Name},
		{"addr", "add", subnet + ".1/24", "dev", h.outer},
		{"link", "set", h.outer, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
		{"-n", h.Name, "link", "set", inner, "up"},
	}
	for i := range n {
		addr := netip.MustParseAddr(fmt.Sprintf("%s.%d", subnet, i+2))
		h.addrs = append(h.addrs, addr)
		steps = append(steps, []string{"-n", h.Name, "addr", "add", addr.String() + "/24", "dev", inner})
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			h.Close()
			return nil, fmt.Errorf("testnet: ip %s: %v: %s (network namespaces need root)", strings.Join(args, " "), err, out)
		}
	}
	return h, nil
}

// New creates a host with n addresses and deletes it when the test ends.
func New(t testing.TB, n int) *Host {
	t.Helper()
	h, err := NewHost(n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Addr returns the host's i-th address.
func (h *Host) Addr(i int) netip.Addr { return h.addrs[i] }

// Addrs returns every address of the host.
func (h *Host) Addrs() []netip.Addr { return h.addrs }

// Run starts a command inside the host; Close stops it.
func (h *Host) Run(name string, argv []string, env ...string) (*proc.Process, error) {
	p, err := proc.Start(name, "ip", append([]string{"netns", "exec", h.Name}, argv...), filepath.Join(h.logDir, name+".log"), env...)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	h.procs = append(h.procs, p)
	return p, nil
}

// Start runs a command inside the host for a test, failing it on error.
func (h *Host) Start(t testing.TB, name string, argv []string, env ...string) *proc.Process {
	t.Helper()
	p, err := h.Run(name, argv, env...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Close stops the host's processes and deletes it.
func (h *Host) Close() {
	for _, p := range h.procs {
		p.Stop(5 * time.Second)
	}
	// Deleting the namespace deletes its end of the veth pair, and so the pair.
	exec.Command("ip", "netns", "del", h.Name).Run() //nolint:errcheck
	exec.Command("ip", "link", "del", h.outer).Run() //nolint:errcheck
	release(h.subnet)
}
