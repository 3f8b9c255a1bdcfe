//go:build !linux

package eastwest

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// pipePool has nothing to pool where the gateway does not splice.
type pipePool struct{}

func newPipePool(*fdBudget) *pipePool { return &pipePool{} }

func (*pipePool) close() {}

func (*pipePool) evict() bool { return false }

// spliceCopy is not available: the caller copies with io.Copy.
func (g *Gateway) spliceCopy(*conn, net.Conn, net.Conn, prometheus.Counter) (bool, error) {
	return false, nil
}
