package eastwest

import (
	"context"
	"strings"
	"testing"
)

// TestRunReturnsWhenServingFails: Run gives up, and stops what it started, when the
// gateway cannot listen.
func TestRunReturnsWhenServingFails(t *testing.T) {
	err := Run(context.Background(), RunOptions{
		Gateway:     Options{Address: "127.0.0.1:-1"},
		XDSServer:   "127.0.0.1:1",
		HTTPAddress: "127.0.0.1:0",
	})
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run = %v, want the listen error", err)
	}
}

func TestRunNeedsAnXDSServer(t *testing.T) {
	if err := Run(context.Background(), RunOptions{}); err == nil {
		t.Fatal("Run without an xDS server succeeded")
	}
}
