package etcdmaint

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// revisionProbeKey is read only for the response header's revision: a
// linearizable read returns the cluster's current revision, whichever member
// answers (a member's Status reports its own applied revision, which may lag).
const revisionProbeKey = "/"

// currentRevision is the cluster's current revision.
func (m *Maintainer) currentRevision(ctx context.Context) (int64, error) {
	var rev int64
	err := m.call(ctx, m.opts.RequestTimeout, func(ctx context.Context) error {
		resp, err := m.opts.Client.Get(ctx, revisionProbeKey, clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("etcdmaint: read current revision: %w", err)
	}
	return rev, nil
}

// CompactTick is one periodic compaction: compact to the revision the previous
// tick observed, then remember the current one for the next. The first tick
// after Start (a new leader) only observes: history younger than one interval
// is never compacted, so a watcher that fell at most one interval behind
// resumes without ErrCompacted, and readers do not all re-list after a leader
// change.
func (m *Maintainer) CompactTick(ctx context.Context) error {
	cur, err := m.currentRevision(ctx)
	if err != nil {
		return err
	}
	prev := m.seen
	m.seen = cur
	if prev == 0 {
		return nil
	}
	return m.compact(ctx, prev, "periodic", false)
}

// compact compacts history up to rev. physical waits until the compacted
// revisions are removed from the backend, so that a defragmentation right
// after reclaims them.
func (m *Maintainer) compact(ctx context.Context, rev int64, reason string, physical bool) error {
	var opts []clientv3.CompactOption
	if physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	start := m.opts.Clock.Now()
	err := m.call(ctx, m.opts.RequestTimeout, func(ctx context.Context) error {
		_, err := m.opts.Client.Compact(ctx, rev, opts...)
		return err
	})
	took := m.opts.Clock.Since(start)
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		// Someone (etcd's own compactor, another tool) compacted further:
		// what this compaction was for is done.
		compactions.WithLabelValues(reason, "already").Inc()
		m.log.V(1).Info("etcd history already compacted past this revision", "revision", rev, "reason", reason)
		return nil
	case err != nil:
		compactions.WithLabelValues(reason, "error").Inc()
		return fmt.Errorf("etcdmaint: compact to revision %d (%s): %w", rev, reason, err)
	}
	compactions.WithLabelValues(reason, "ok").Inc()
	compactedRevision.Set(float64(rev))
	lastCompaction.Set(took.Seconds())
	m.log.V(1).Info("etcd history compacted", "revision", rev, "reason", reason, "duration", took.String())
	return nil
}
