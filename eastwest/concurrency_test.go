package eastwest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// TestThousandConcurrentTunnels holds 1,000 mTLS tunnels open through one gateway at
// the same time, each doing a handshake and an echo before and after all are open.
// Handshakes are started at most 64 at a time (a 2-core machine does them all in
// about a second); the tunnels are all open together.
func TestThousandConcurrentTunnels(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const n = 1000
	sni, svc := uniqueSNI(t.Name())
	b := newBackend(t, "b1")
	// Every client is 127.0.0.1: one source, allowed all n.
	_, addr := startGateway(t, Options{MaxConnectionsPerSource: n}, Routes{sni: {b.addr()}})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	handshakes := make(chan struct{}, 64)
	var allOpen sync.WaitGroup
	allOpen.Add(n)
	release := make(chan struct{})
	g, ctx := errgroup.WithContext(ctx)
	for i := range n {
		g.Go(func() error {
			select {
			case handshakes <- struct{}{}:
			case <-ctx.Done():
				allOpen.Done()
				return ctx.Err()
			}
			c, _, err := tryDialTLS(addr, sni, getPKI(t).clientConfig(sni))
			<-handshakes
			if err != nil {
				allOpen.Done()
				return fmt.Errorf("connection %d: %w", i, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Minute)) //nolint:errcheck
			if err := echoErr(c, fmt.Sprintf("first %d", i)); err != nil {
				allOpen.Done()
				return fmt.Errorf("connection %d: %w", i, err)
			}
			allOpen.Done()
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := echoErr(c, fmt.Sprintf("second %d", i)); err != nil {
				return fmt.Errorf("connection %d after all were open: %w", i, err)
			}
			return nil
		})
	}
	waited := make(chan struct{})
	go func() { allOpen.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		if got := activeCount(svc); got != n {
			t.Errorf("active_connections = %v with every client connected, want %d", got, n)
		}
	}
	close(release)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := counter(svc, resultOK); got != n {
		t.Errorf("connections_total{ok} = %v, want %d", got, n)
	}
	testutil.Eventually(t, 30*time.Second, "every tunnel to end", testutil.Check(func() (bool, string) { return activeCount(svc) == 0, "" }))
}
