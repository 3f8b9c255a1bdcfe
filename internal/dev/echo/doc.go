// Package echo is the backend meshfed's tests and sandbox route to: a gRPC server that
// answers grpc.testing.TestService/UnaryCall (grpc-go's interop service) with its own
// identity, e.g. "alpha/us-east-a/10.250.3.2:8080", so a client can tell where each
// request landed. ServeXDS runs it as a proxyless gRPC xDS server of a cluster's
// agent, which gives it its Listener and with it its mTLS. A Behaviour makes it fail a
// share of its calls with UNAVAILABLE; a call carrying the metadata key DelayHeader
// waits that long before it is answered.
package echo
