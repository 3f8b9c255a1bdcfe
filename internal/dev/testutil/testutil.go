package testutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Poll is how often Eventually checks its condition.
const Poll = 20 * time.Millisecond

// Eventually polls cond until it returns nil, failing the test with cond's last error
// once within has passed.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", within, what, err)
		}
		time.Sleep(Poll)
	}
}

// Check turns a condition reporting (ok, why) into Eventually's form.
func Check(cond func() (bool, string)) func() error {
	return func() error {
		if ok, why := cond(); !ok {
			if why == "" {
				why = "not yet"
			}
			return errors.New(why)
		}
		return nil
	}
}

// Run starts run in a goroutine with a context that is cancelled when the test ends,
// and then waits for it, failing the test if it returned an error other than the
// context's cancellation.
func Run(t testing.TB, name string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	})
}
