package clusteragent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRunAllStopsEveryComponentOnFirstFailure: when one component fails, the others
// see their context cancelled, and runAll returns the failure only after all of them
// have returned.
func TestRunAllStopsEveryComponentOnFirstFailure(t *testing.T) {
	stopped := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	wait := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped[name])
			return ctx.Err()
		}
	}
	errc := make(chan error, 1)
	go func() {
		errc <- runAll(context.Background(), map[string]func(context.Context) error{
			"a": wait("a"), "b": wait("b"),
			"failing": func(context.Context) error { return errors.New("boom") },
		})
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "agent failing: boom") {
			t.Fatalf("runAll = %v, want the failing component's error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("runAll did not return after a component failed: the others were not cancelled")
	}
	for name, c := range stopped {
		select {
		case <-c:
		default:
			t.Errorf("runAll returned before component %s stopped", name)
		}
	}
}

// TestRunAllEndsQuietlyWithItsContext: cancelling the agent's context is not an error,
// and a component that stops on its own while the context is live is one.
func TestRunAllEndsQuietlyWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runAll(ctx, map[string]func(context.Context) error{
		"a": func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
	}); err != nil {
		t.Fatalf("runAll after cancel = %v, want nil", err)
	}
	err := runAll(context.Background(), map[string]func(context.Context) error{
		"quitter": func(context.Context) error { return nil },
	})
	if err == nil || !strings.Contains(err.Error(), "agent quitter: stopped") {
		t.Fatalf("runAll = %v, want quitter's early stop reported", err)
	}
}
