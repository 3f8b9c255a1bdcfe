package eastwest

import (
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshfed/meshfed/eastwest/internal/clienthello"
)

// Defaults of Options.
const (
	// DefaultAddress is the east-west gateway's port, Istio's convention (and
	// api/v1alpha1.DefaultGatewayPort).
	DefaultAddress = ":15443"
	// DefaultMaxConnections bounds open client connections (peeking and tunneled).
	DefaultMaxConnections = 10000
	// DefaultMaxConnectionsPerSource bounds open client connections from one source
	// address (one IPv4 address, one IPv6 /64).
	DefaultMaxConnectionsPerSource = 512
	// DefaultMaxClientHelloBytes is one full TLS record with its header (16 KiB + 5).
	DefaultMaxClientHelloBytes = clienthello.DefaultMaxBytes
	// DefaultPeekTimeout bounds the wait for a whole ClientHello.
	DefaultPeekTimeout = 10 * time.Second
	// DefaultDialTimeout bounds one connection attempt to an endpoint.
	DefaultDialTimeout = 5 * time.Second
	// DefaultDialAttempts is how many distinct endpoints are tried per connection.
	DefaultDialAttempts = 2
	// DefaultIdleTimeout closes a tunnel in which no byte moved for this long.
	DefaultIdleTimeout = time.Hour
)

// Options configure a Gateway. The zero value of every field means its default.
type Options struct {
	// Address is where ListenAndServe listens. Default ":15443".
	Address string

	// MaxConnections bounds client connections open at once, those still sending
	// their ClientHello and established tunnels alike. A connection beyond it is
	// accepted and closed at once (and counted with reason "over_limit"), so that it
	// fails fast instead of waiting in the kernel's backlog. Default 10000. MaxFDs
	// bounds them too: a tunnel holds two file descriptors, four more while it
	// splices in both directions.
	MaxConnections int

	// MaxConnectionsPerSource bounds the client connections open at once from one
	// source: one IPv4 address, or one IPv6 /64. A connection beyond it is accepted
	// and closed at once (reason "source_limit"), so that one client, or one host
	// flooding the gateway, cannot take the connections every other cluster needs.
	// Default 512. A gateway whose callers come through one NAT address needs more.
	MaxConnectionsPerSource int

	// MaxFDs is the file descriptors the gateway's connections may hold at once:
	// each connection takes two when it is accepted (its socket and the one to its
	// endpoint) and splice pipes two each while they are open. A connection that
	// would go over it is accepted and closed at once (reason "fd_budget"), and a
	// transfer that finds no room for a pipe copies through user space instead.
	// Default: the process's limit on open files (RLIMIT_NOFILE) less an eighth of
	// it (at least 64, at most 1024), so that the health and metrics server, the xDS
	// stream and the accept of a refused connection never run out. New refuses a
	// value that leaves less than 64 to the rest of the process.
	MaxFDs int

	// MaxClientHelloBytes bounds what is read before routing: the TLS records that
	// carry the ClientHello, headers included. Default 16389 (16 KiB + 5), one full
	// record. A larger ClientHello is refused with reason "too_large".
	MaxClientHelloBytes int

	// PeekTimeout bounds the time from accepting a connection to having its whole
	// ClientHello. Default 10s. A slower client is closed with reason "peek_timeout".
	PeekTimeout time.Duration

	// DialTimeout bounds one connection attempt to an endpoint. Default 5s.
	DialTimeout time.Duration

	// DialAttempts is how many distinct endpoints of a route are tried, one after
	// the other, before the client connection is given up with result
	// "dial_failed". Default 2. An endpoint that refused or timed out is usually a
	// pod that went away before the routes caught up; the next one is likely fine.
	DialAttempts int

	// IdleTimeout closes a tunnel in which no byte moved in either direction for
	// this long (reason "idle_timeout"). Default 1h. Activity is checked every
	// min(5s, IdleTimeout/4), so a tunnel is closed up to that much after
	// IdleTimeout. On Linux the check reads the kernel's byte counts of both sockets;
	// elsewhere a transfer to a receiver so slow that one splice (up to 1 MiB) takes
	// longer than IdleTimeout may be taken for idle.
	IdleTimeout time.Duration

	// Logger receives the gateway's logs. At the default verbosity only lifecycle
	// events (listening, draining, drained) and accept errors appear; refused
	// connections, aborted tunnels and route updates are logged at V(1), established
	// tunnels at V(2). Every failure is counted in metrics whatever the verbosity.
	// Default: discard.
	Logger logr.Logger
}

// setDefaults fills in defaults and checks what remains.
func (o *Options) setDefaults() error {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.MaxConnectionsPerSource == 0 {
		o.MaxConnectionsPerSource = DefaultMaxConnectionsPerSource
	}
	limit, known := openFileLimit()
	if o.MaxFDs == 0 {
		if !known {
			return fmt.Errorf("eastwest: the process's limit on open files is unknown here: set MaxFDs")
		}
		o.MaxFDs = limit - fdHeadroom(limit)
	}
	if known && o.MaxFDs > limit-minFDHeadroom {
		return fmt.Errorf("eastwest: MaxFDs %d leaves less than %d of the process's %d file descriptors (RLIMIT_NOFILE) to the rest of the process: lower it or raise the limit",
			o.MaxFDs, minFDHeadroom, limit)
	}
	if o.MaxClientHelloBytes == 0 {
		o.MaxClientHelloBytes = DefaultMaxClientHelloBytes
	}
	if o.PeekTimeout == 0 {
		o.PeekTimeout = DefaultPeekTimeout
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.DialAttempts == 0 {
		o.DialAttempts = DefaultDialAttempts
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	switch {
	case o.MaxConnections < 0:
		return fmt.Errorf("eastwest: MaxConnections %d is negative", o.MaxConnections)
	case o.MaxConnectionsPerSource < 0:
		return fmt.Errorf("eastwest: MaxConnectionsPerSource %d is negative", o.MaxConnectionsPerSource)
	case o.MaxFDs < minFDs:
		return fmt.Errorf("eastwest: MaxFDs %d is below %d", o.MaxFDs, minFDs)
	case o.MaxClientHelloBytes < minClientHelloBytes:
		return fmt.Errorf("eastwest: MaxClientHelloBytes %d is below %d", o.MaxClientHelloBytes, minClientHelloBytes)
	case o.PeekTimeout < 0, o.DialTimeout < 0, o.IdleTimeout < 0:
		return fmt.Errorf("eastwest: negative timeout")
	case o.DialAttempts < 0:
		return fmt.Errorf("eastwest: DialAttempts %d is negative", o.DialAttempts)
	}
	return nil
}

// minFDHeadroom is the fewest file descriptors MaxFDs must leave to the rest of the
// process; minFDs the smallest MaxFDs, a few connections' worth.
const (
	minFDHeadroom = 64
	minFDs        = 16
)

// minClientHelloBytes is the smallest MaxClientHelloBytes accepted: below it even a
// ClientHello with nothing but a server name does not fit.
const minClientHelloBytes = 128

// sampleInterval is how often a tunnel's byte counts reach the metrics and its
// activity is checked for the idle timeout.
func (o *Options) sampleInterval() time.Duration {
	return max(min(5*time.Second, o.IdleTimeout/4), time.Millisecond)
}
