// Package gwbench is the east-west gateway's benchmark (make bench-gateway,
// meshfedctl dev bench-gateway): in one run it measures direct TCP, a minimal splice
// proxy and the real gateway side by side, and prints one table with the ratios
// gateway/splice and gateway/direct.
//
// The gateway is the `meshfed gateway` binary as its own process, configured over
// real xDS (ADS) by a small go-control-plane server in the benchmark's process that
// serves what an agent would: the listener xdsnames.GatewayListener with one SNI
// passthrough filter chain per backend, and their load assignments. The splice proxy
// (ServeSplice) forwards each listener to one backend through splice(2) and a pipe
// per direction, nothing else: the floor any user-space TCP proxy can reach. Both run
// pinned to CPU 1 (taskset); the backends (a sink and a TLS echo server) and the load
// client run in the benchmark's process, pinned to CPU 0.
//
// Three figures per path: throughput (bulk bytes over a few connections, each
// starting with a real ClientHello so that the gateway can route it, then plain
// bytes, so that TLS's cost on the endpoints does not hide the proxy's), round trips
// of small messages over TLS (one handshake per connection, then many round trips),
// and connection setup (a new TLS connection and its first round trip). Paths are
// measured one at a time, in alternating rounds, so that other load on the machine
// hits all three alike.
package gwbench
