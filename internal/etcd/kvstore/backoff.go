package kvstore

import (
	"context"
	"math/rand/v2"
	"time"

	"k8s.io/utils/clock"
)

// backoff is an exponential delay with jitter for loops that retry a whole
// operation (a list, a lease grant). Per-key write retries use the workqueue's
// rate limiter instead.
type backoff struct {
	base, max time.Duration
	cur       time.Duration
}

// next returns the delay before the next attempt: base, then doubling up to
// max, plus up to 10% jitter so that many readers do not retry in lockstep.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur + rand.N(b.cur/10+1)
}

// reset makes the next delay base again, after a success.
func (b *backoff) reset() { b.cur = 0 }

// sleep waits for d on clk, and reports false if ctx ended first.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
