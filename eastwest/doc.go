// Package eastwest is the data plane of meshfed's east-west gateway, what
// `meshfed gateway` runs in every member cluster: a TCP proxy on port 15443 that
// carries mTLS connections from other clusters to this cluster's endpoints, routing
// each one on the server name (SNI) of its TLS ClientHello.
//
// A remote sidecar (or proxyless gRPC client) reaches a service in this cluster by
// connecting to the gateway with SNI outbound_.<port>_._.<hostname> (Istio's
// convention, see SNI) and doing its TLS handshake with the endpoint behind it. The
// gateway reads the ClientHello, picks a ready endpoint for that name, dials it,
// replays the ClientHello and then copies bytes both ways.
//
// Invariants:
//   - The gateway never terminates TLS. It holds no keys and decrypts nothing; client
//     and endpoint authenticate each other end to end, and the endpoint sees the
//     client's own certificate.
//   - It never reads past the ClientHello before routing: it reads whole TLS records
//     until the ClientHello message is complete (bounded by MaxClientHelloBytes and
//     PeekTimeout) and forwards exactly those bytes, first, to the endpoint.
//   - One bad connection never affects another. Each connection has its own
//     goroutines, deadlines and failure; every failure closes only that connection
//     and is counted (meshfed_gateway_errors_total by reason); a panic in a
//     connection's handler is recovered and counted as "internal".
//   - Only configured routes become metric labels; nothing a client sends does.
//   - The route table is a value: SetRoutes validates a whole new table and swaps it
//     in atomically. New connections use the new table, established tunnels keep
//     their endpoint.
//
// Balancing is least-connections over the route's endpoints, ties broken
// round-robin: tunnels are long-lived (HTTP/2 and gRPC multiplex many requests over
// one), so connection counts, not connection arrivals, are what should be even. A
// failed dial is retried on another endpoint (Options.DialAttempts).
//
// Between TCP sockets on Linux, bytes move with splice(2): socket to pipe to socket
// in the kernel, never through user space. The gateway splices by itself rather than
// through io.Copy (whose pipes a tunnel holds while it waits, and which stay open
// in a sync.Pool until the garbage collector runs): a tunnel takes a pipe from a
// bounded pool when bytes come and gives it back once they stop; idle pipes are
// closed after a few seconds. Each direction ends with a half-close (CloseWrite) of
// the other socket, so a client that shuts down its sending side still gets the
// whole answer.
//
// Limits, each enforced at accept (the connection is accepted and closed at once,
// and counted by reason): MaxConnections in all, MaxConnectionsPerSource from one
// source (an IPv4 address, an IPv6 /64), and MaxFDs, a budget of file descriptors
// below the process's limit that connections (two each) and pipes (two each) draw
// on, so that a flood never leaves the process without descriptors for /metrics,
// /readyz and its xDS stream. A transfer that finds no room for a pipe copies
// through user space.
//
// The configuration comes from outside: the agent's xDS (a Listener whose filter
// chains match server_names and whose tcp_proxy names a cluster, plus that cluster's
// ClusterLoadAssignment) becomes Routes through FromXDS, a pure translator, and
// SetRoutes applies them. FollowXDS does this over ADS (eastwest/internal/adsclient):
//   - An xDS response is applied route by route: FromXDS refuses what the gateway
//     cannot honour one part at a time (a filter chain, a server name, a load
//     assignment) and the rest is put in use. A response is ACKed when nothing in it
//     was refused; otherwise it is NACKed with an error_detail naming each refused
//     part, its good part in use all the same, and each refused name keeps the
//     endpoints it had. One bad route never holds back the others. A response that
//     cannot be read at all is NACKed and changes nothing.
//   - Responses of types the gateway did not subscribe to are ignored.
//
// Metrics: the collectors are package variables, registered nowhere until
// RegisterMetrics; the process registers them in its own registry and serves that
// one with Handler, so no other component's metrics mix with the gateway's.
//
// Run is what `meshfed gateway` runs (its flags only fill RunOptions): a Gateway, its
// own metrics registry, Handler on the health port, FollowXDS, and a bounded drain
// when its context ends. A main that wants more control does the same by hand:
//
//	gw, err := eastwest.New(eastwest.Options{Logger: log})
//	reg := prometheus.NewRegistry()
//	eastwest.RegisterMetrics(reg)
//	go http.ListenAndServe(":15021", gw.Handler(reg)) // /healthz, /readyz, /metrics
//	go gw.FollowXDS(ctx, "agent:15010", nodeID, log)  // routes from the agent
//	go gw.ListenAndServe()
//	// on SIGTERM:
//	gw.BeginDrain()         // /readyz fails; still accepting while load balancers notice
//	time.Sleep(drainDelay)
//	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
//	gw.Shutdown(ctx)        // stop accepting, let tunnels finish, then close them
//	cancel()
package eastwest
