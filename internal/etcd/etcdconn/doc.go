// Package etcdconn opens meshfed's etcd client connections: mTLS with a client
// certificate, whose common name is the etcd user, and quiet logs.
//
// Both the hub (as etcd's root user) and agents (as their cluster's user) connect
// through New or Dial, so every connection has the same TLS settings and timeouts.
//
// Invariants:
//   - A client's certificate is read from its KeyPair at every TLS handshake, never
//     copied into the TLS configuration: KeyPair.Set makes every later handshake (a
//     reconnect, a new endpoint) present the new certificate, while connections
//     already open keep working (etcd checks a client certificate at the handshake
//     only), so no watch is cut and none loses an event because of a renewal.
//   - KeyPair.Set accepts only a certificate whose key it is given and whose common
//     name, the etcd user, is the one the pair started with: a renewal never changes
//     who the client is.
package etcdconn
