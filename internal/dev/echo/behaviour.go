package echo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DelayHeader is the request metadata key whose value (a Go duration, "1s") an echo
// server waits before it answers: a slow call on demand.
const DelayHeader = "x-echo-delay"

// Behaviour is how an echo server misbehaves, for tests of clients' retries and
// timeouts. The zero value behaves.
type Behaviour struct {
	// FailPercent (0 to 100) of the calls fail with UNAVAILABLE. Which ones is
	// deterministic, a function of the call's number on this server, and spread like
	// independent draws (runs of failures come as at random): failing the first
	// FailPercent of every hundred would make runs no client retry budget hides,
	// failing every (100/FailPercent)th none that a single retry does not.
	FailPercent int
}

// String is the Behaviour as ParseBehaviour reads it: "fail=30", "" for the zero value.
func (b Behaviour) String() string {
	if b.FailPercent == 0 {
		return ""
	}
	return "fail=" + strconv.Itoa(b.FailPercent)
}

// ParseBehaviour reads a Behaviour written by String.
func ParseBehaviour(s string) (Behaviour, error) {
	var b Behaviour
	if s == "" {
		return b, nil
	}
	v, ok := strings.CutPrefix(s, "fail=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 || n > 100 {
		return b, fmt.Errorf("echo: behaviour %q: want fail=<percent from 0 to 100>", s)
	}
	b.FailPercent = n
	return b, nil
}

// misbehave runs before every call: it waits the DelayHeader's duration (or until
// the call ends) and fails the Behaviour's share of calls; calls counts them.
func misbehave(ctx context.Context, b Behaviour, calls *atomic.Uint64) error {
	n := calls.Add(1) - 1
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(DelayHeader); len(v) > 0 {
			d, err := time.ParseDuration(v[0])
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "%s: %v", DelayHeader, err)
			}
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
	}
	if int(mix(n)%100) < b.FailPercent {
		return status.Errorf(codes.Unavailable, "echo: call %d failed on purpose (fail=%d%%)", n, b.FailPercent)
	}
	return nil
}

// mix is SplitMix64's finalizer: a fixed bijection of the call number that looks random.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
