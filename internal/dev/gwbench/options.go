package gwbench

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// Options size the run. Zero fields take Defaults'.
type Options struct {
	// Dir holds the processes' logs. Required.
	Dir string
	// MeshfedBinary is the `meshfed` executable the gateway runs from. Required.
	MeshfedBinary string
	// SpliceCommand returns the command that runs the splice proxy (ServeSplice) with
	// these forwards ("listen=target"); its stdout must carry SpliceListening lines.
	// Required.
	SpliceCommand func(forwards []string) *exec.Cmd
	// Rounds is how many times every path is measured, alternating paths.
	Rounds int
	// Bytes is what one throughput measurement moves, split over Conns connections.
	Bytes int64
	Conns int
	// RoundTrips is the round trips per round and path, over RTTConns connections
	// one after the other; MessageSize the bytes of each message.
	RoundTrips, RTTConns, MessageSize int
	// Setups is the new connections per round and path.
	Setups int
	// NoPin runs without taskset even when the machine has two CPUs.
	NoPin bool
	// Out receives progress lines. Default: discard.
	Out io.Writer
}

// Defaults are what `make bench-gateway` runs: about 20 seconds on a 2-core machine.
var Defaults = Options{Rounds: 3, Bytes: 2 << 30, Conns: 4, RoundTrips: 5000, RTTConns: 5, MessageSize: 64, Setups: 500}

// Quick is a tiny run, what the unit test runs: seconds.
var Quick = Options{Rounds: 1, Bytes: 8 << 20, Conns: 2, RoundTrips: 50, RTTConns: 2, MessageSize: 64, Setups: 10}

func (o *Options) setDefaults() error {
	d := Defaults
	for _, f := range []struct{ p, def *int }{{&o.Rounds, &d.Rounds}, {&o.Conns, &d.Conns}, {&o.RoundTrips, &d.RoundTrips},
		{&o.RTTConns, &d.RTTConns}, {&o.MessageSize, &d.MessageSize}, {&o.Setups, &d.Setups}} {
		if *f.p == 0 {
			*f.p = *f.def
		}
	}
	if o.Bytes == 0 {
		o.Bytes = d.Bytes
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	switch {
	case o.Dir == "" || o.MeshfedBinary == "" || o.SpliceCommand == nil:
		return errors.New("gwbench: Options.Dir, MeshfedBinary and SpliceCommand are required")
	case o.Rounds < 1 || o.Conns < 1 || o.RoundTrips < 1 || o.RTTConns < 1 || o.Setups < 1:
		return errors.New("gwbench: rounds, connections, round trips and setups must be at least 1")
	case o.Bytes < int64(o.Conns):
		return fmt.Errorf("gwbench: %d bytes over %d connections: want at least a byte per connection", o.Bytes, o.Conns)
	case o.MessageSize < 1 || o.MessageSize > 16<<10:
		return fmt.Errorf("gwbench: message size %d: use 1 to 16384 bytes", o.MessageSize)
	}
	return nil
}
