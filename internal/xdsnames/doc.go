// Package xdsnames holds the names that an agent's xDS server and its cluster's
// east-west gateway must agree on: the gateway's Listener, its port, and the TLS server
// name (SNI) of a global service port. Both sides import it; neither imports the other.
//
// The names follow Istio's conventions, so an Envoy east-west gateway could serve the
// same configuration. They are part of the wire contract: changing one breaks gateways
// that run an older version.
package xdsnames
