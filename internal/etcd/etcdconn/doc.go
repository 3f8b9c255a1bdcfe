// Package etcdconn opens meshfed's etcd client connections: mTLS with a client
// certificate, whose common name is the etcd user, and quiet logs.
//
// Both the hub (as etcd's root user) and agents (as their cluster's user) connect
// through New, so every connection has the same TLS settings and timeouts.
package etcdconn
