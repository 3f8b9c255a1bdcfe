package xds

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/meshfed/meshfed/internal/etcd/view"
)

// prober checks that the east-west gateways of clusters on other networks accept
// connections, so that a cluster whose gateway is down stops getting traffic without
// waiting for any proxy's outlier detection.
type prober struct {
	interval, timeout time.Duration
	changed           func()

	mu   sync.RWMutex
	down map[netip.AddrPort]bool // gateways whose last probe failed
}

func newProber(interval, timeout time.Duration, changed func()) *prober {
	return &prober{interval: interval, timeout: timeout, changed: changed, down: map[netip.AddrPort]bool{}}
}

// up reports whether a gateway's last probe succeeded; an unprobed one counts as up.
func (p *prober) up(addr netip.AddrPort) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return !p.down[addr]
}

// run probes the remote gateways of the view every interval until ctx is done.
func (p *prober) run(ctx context.Context, v *view.View, self string) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.probeAll(ctx, remoteGateways(v, self))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *prober) probeAll(ctx context.Context, gateways []netip.AddrPort) {
	results := make([]bool, len(gateways))
	var wg sync.WaitGroup
	for i, g := range gateways {
		wg.Go(func() {
			d := net.Dialer{Timeout: p.timeout}
			c, err := d.DialContext(ctx, "tcp", g.String())
			if err == nil {
				c.Close()
			}
			results[i] = err == nil
		})
	}
	wg.Wait()
	down := map[netip.AddrPort]bool{}
	for i, g := range gateways {
		if !results[i] {
			down[g] = true
			gatewayDown.WithLabelValues(g.String()).Set(1)
		} else {
			gatewayDown.WithLabelValues(g.String()).Set(0)
		}
	}
	p.mu.Lock()
	changed := len(down) != len(p.down)
	for g := range down {
		changed = changed || !p.down[g]
	}
	p.down = down
	p.mu.Unlock()
	if changed {
		p.changed()
	}
}

// remoteGateways lists the gateways of clusters on another network than self's.
func remoteGateways(v *view.View, self string) []netip.AddrPort {
	network := ""
	if c, ok := v.Cluster(self); ok && c.Info != nil {
		network = c.Info.Network
	}
	var out []netip.AddrPort
	for _, c := range v.Clusters() {
		if c.Info == nil || network == "" || c.Info.Network == network {
			continue
		}
		for _, g := range c.Info.Gateways {
			if addr, err := netip.ParseAddr(g.Address); err == nil {
				out = append(out, netip.AddrPortFrom(addr, uint16(g.Port)))
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}
