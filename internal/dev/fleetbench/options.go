package fleetbench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Options size the fleet and the run. Zero fields take the defaults of FromEnv's
// documentation (Defaults).
type Options struct {
	// Dir holds the etcd data, the kube-apiserver, the agent's log. Required.
	Dir string
	// MeshfedBinary is the `meshfed` executable the agent runs from. Required.
	MeshfedBinary string
	// Clusters, Services and Endpoints size the fleet: every simulated cluster
	// publishes every service with Endpoints endpoints.
	Clusters, Services, Endpoints int
	// Streams is the number of ADS streams of the fan-out phase.
	Streams int
	// Rate is the churn of the churn phase, in endpoint readiness flips per second.
	Rate int
	// Duration is how long the churn phase, and the heartbeat-only window, last.
	Duration time.Duration
	// Zones is the number of locality zones of the agent's cluster its proxies sit
	// in: one latency observer per zone and service.
	Zones int
	// LightChanges and BurstChanges are the changes of the light-load and burst phases;
	// FanoutChanges those of the fan-out phase.
	LightChanges, BurstChanges, FanoutChanges int
	// HeartbeatTTL is the simulated clusters' heartbeat lease; the heartbeat is
	// rewritten every third of it, as agents do.
	HeartbeatTTL time.Duration
	// HeapSettle is how long after the fan-out streams left the agent's heap is read:
	// its garbage collector runs on its own schedule.
	HeapSettle time.Duration
	// AgentMemoryLimit, if not empty, is the agent's GOMEMLIMIT (Go's soft memory
	// limit, e.g. "180MiB"), as a container's memory limit sets it (see
	// docs/operations.md); "" runs it without.
	AgentMemoryLimit string
	// Profile writes the agent's profiles into Dir: its CPU during the churn
	// (churn.cpu.pprof) and the fan-out (fanout.cpu.pprof), its heap after the
	// bootstrap (bootstrap.heap.pprof), from its /debug/pprof.
	Profile bool
	// Out receives progress lines. Default: discard.
	Out io.Writer
}

// Defaults are the sizes `make bench-fleet` runs with: a few minutes on a 2-core
// machine.
var Defaults = Options{Clusters: 100, Services: 100, Endpoints: 10, Streams: 1000, Rate: 100, Duration: 30 * time.Second,
	Zones: 4, LightChanges: 50, BurstChanges: 100, FanoutChanges: 5, HeartbeatTTL: 15 * time.Second, HeapSettle: 10 * time.Second}

// Quick is a tiny fleet that runs in seconds: what the unit test runs.
var Quick = Options{Clusters: 3, Services: 3, Endpoints: 4, Streams: 20, Rate: 20, Duration: 2 * time.Second,
	Zones: 2, LightChanges: 5, BurstChanges: 10, FanoutChanges: 2, HeartbeatTTL: 3 * time.Second, HeapSettle: time.Second}

// Env names the variables FromEnv reads.
var Env = struct{ Clusters, Services, Endpoints, Streams, Rate, Duration, Zones string }{
	"FLEET_CLUSTERS", "FLEET_SERVICES", "FLEET_ENDPOINTS", "FLEET_STREAMS", "FLEET_RATE", "FLEET_DURATION", "FLEET_ZONES"}

// FromEnv overrides o's sizes with the FLEET_* variables that are set.
func FromEnv(o Options) (Options, error) {
	ints := map[string]*int{Env.Clusters: &o.Clusters, Env.Services: &o.Services, Env.Endpoints: &o.Endpoints,
		Env.Streams: &o.Streams, Env.Rate: &o.Rate, Env.Zones: &o.Zones}
	for name, p := range ints {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return o, fmt.Errorf("%s=%q: want a whole number", name, v)
			}
			*p = n
		}
	}
	if v := os.Getenv(Env.Duration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, fmt.Errorf("%s=%q: want a duration such as 30s", Env.Duration, v)
		}
		o.Duration = d
	}
	return o, nil
}

func (o *Options) setDefaults() error {
	d := Defaults
	for _, f := range []struct{ p, def *int }{{&o.Clusters, &d.Clusters}, {&o.Services, &d.Services}, {&o.Endpoints, &d.Endpoints},
		{&o.Streams, &d.Streams}, {&o.Rate, &d.Rate}, {&o.Zones, &d.Zones}, {&o.LightChanges, &d.LightChanges},
		{&o.BurstChanges, &d.BurstChanges}, {&o.FanoutChanges, &d.FanoutChanges}} {
		if *f.p == 0 {
			*f.p = *f.def
		}
	}
	if o.Duration == 0 {
		o.Duration = d.Duration
	}
	if o.HeartbeatTTL == 0 {
		o.HeartbeatTTL = d.HeartbeatTTL
	}
	if o.HeapSettle == 0 {
		o.HeapSettle = d.HeapSettle
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	switch {
	case o.Dir == "" || o.MeshfedBinary == "":
		return errors.New("fleetbench: Options.Dir and Options.MeshfedBinary are required")
	case o.Clusters < 1 || o.Clusters > 255:
		return fmt.Errorf("fleetbench: %s=%d: use 1 to 255 clusters (one /16 of 10.0.0.0/8 each)", Env.Clusters, o.Clusters)
	case o.Services < 1 || o.Endpoints < 1 || o.Services*o.Endpoints > 65000:
		return fmt.Errorf("fleetbench: %s=%d × %s=%d: want at least 1 of each and at most 65,000 endpoints per cluster",
			Env.Services, o.Services, Env.Endpoints, o.Endpoints)
	case o.Zones < 1 || o.Zones > 26:
		return fmt.Errorf("fleetbench: %s=%d: use 1 to 26 zones", Env.Zones, o.Zones)
	case o.Rate < 1 || o.Streams < 1 || o.Duration < time.Second:
		return fmt.Errorf("fleetbench: %s, %s must be at least 1 and %s at least 1s", Env.Rate, Env.Streams, Env.Duration)
	case o.HeartbeatTTL < 3*time.Second:
		return errors.New("fleetbench: HeartbeatTTL must be at least 3s (etcd leases are in whole seconds)")
	}
	return nil
}
