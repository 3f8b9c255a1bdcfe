package echo

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestBehaviour: a server failing 30% fails that share of many calls, the same calls
// every time, in runs of several as at random; DelayHeader delays a call until the
// caller's deadline cuts it; the spec round-trips.
func TestBehaviour(t *testing.T) {
	serve := func(b Behaviour) *grpc.ClientConn {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		RegisterWith(s, "flaky", b)
		go s.Serve(lis) //nolint:errcheck
		t.Cleanup(s.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	ctx := context.Background()
	pattern := func(conn *grpc.ClientConn, n int) []bool {
		out := make([]bool, n)
		for i := range out {
			_, err := Call(ctx, conn)
			if err != nil && status.Code(err) != codes.Unavailable {
				t.Fatalf("call %d: %v, want UNAVAILABLE or success", i, err)
			}
			out[i] = err != nil
		}
		return out
	}
	b := Behaviour{FailPercent: 30}
	first, second := pattern(serve(b), 2000), pattern(serve(b), 2000)
	failed, run, longest := 0, 0, 0
	for i, f := range first {
		if f != second[i] {
			t.Fatalf("call %d failed on one server only: the pattern is not deterministic", i)
		}
		if f {
			failed++
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if failed < 540 || failed > 660 || longest < 3 || longest > 12 {
		t.Errorf("fail=30: %d of 2000 failed, longest run %d; want about 600, in runs as at random", failed, longest)
	}
	for _, f := range pattern(serve(Behaviour{}), 100) {
		if f {
			t.Fatal("a server without misbehaviour failed a call")
		}
	}

	conn := serve(Behaviour{})
	dctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, DelayHeader, "1s"), 100*time.Millisecond)
	defer cancel()
	if _, err := Call(dctx, conn); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a 1 s delay under a 100 ms deadline: %v, want DEADLINE_EXCEEDED", err)
	}
	if _, err := Call(metadata.AppendToOutgoingContext(ctx, DelayHeader, "1ms"), conn); err != nil {
		t.Errorf("a 1 ms delay: %v", err)
	}
	if _, err := Call(metadata.AppendToOutgoingContext(ctx, DelayHeader, "soon"), conn); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad delay: %v, want INVALID_ARGUMENT", err)
	}

	for _, s := range []string{"", "fail=30", "fail=100"} {
		if b, err := ParseBehaviour(s); err != nil || b.String() != s {
			t.Errorf("ParseBehaviour(%q) = %v, %v", s, b, err)
		}
	}
	for _, s := range []string{"fail=101", "fail=-1", "fail", "slow=1"} {
		if _, err := ParseBehaviour(s); err == nil {
			t.Errorf("ParseBehaviour(%q) accepted", s)
		}
	}
}
