package kvstore

import (
	"context"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// newBackoff is the delay schedule of loops that retry a whole operation (a list, a
// lease grant): base, then doubling up to max, plus up to 10% jitter so that many
// readers do not retry in lockstep. Step it for each delay; start a new one after a
// success. Per-key write retries use the workqueue's rate limiter instead.
func newBackoff(base, max time.Duration) wait.Backoff {
	return wait.Backoff{Duration: base, Factor: 2, Jitter: 0.1, Cap: max, Steps: math.MaxInt32}
}

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
