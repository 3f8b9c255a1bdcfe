package xds_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// TestHeartbeatsCostNoRebuild: heartbeats that change no cluster's freshness state
// (every cluster stays fresh) rebuild nothing; a real change still rebuilds, once.
func TestHeartbeatsCostNoRebuild(t *testing.T) {
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	testutil.Eventually(t, 30*time.Second, "the first rebuild", func() error {
		if s.Rebuilds() == 0 {
			return fmt.Errorf("no rebuild yet")
		}
		return nil
	})
	// Settled: no rebuild pending.
	before := s.Rebuilds()
	change := func(ready bool, want int64) {
		t.Helper()
		w.setReady("beta", "us-east-1d", ready)
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("rebuild %d", want), func() error {
			if n := s.Rebuilds(); n != want {
				return fmt.Errorf("%d rebuilds, want %d", n, want)
			}
			return nil
		})
	}
	beat := func() {
		for range 50 {
			for _, c := range []string{"alpha", "beta", "gamma"} {
				w.put(keyspace.ClusterHeartbeat(c), &model.Heartbeat{Time: time.Now(), TTL: 15, Agent: c})
			}
		}
	}
	// The loop handles a heartbeat before or after a change; either way only the
	// changes rebuild. The second change is served after the first heartbeats were
	// handled (one goroutine handles both), so counting after it sees them all.
	beat()
	change(false, before+1)
	beat()
	change(true, before+2)
	if n := s.Rebuilds(); n != before+2 {
		t.Errorf("%d rebuilds after 300 heartbeats and 2 changes, want %d", n-before, 2)
	}
}
