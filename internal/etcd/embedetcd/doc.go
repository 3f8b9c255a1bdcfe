// Package embedetcd runs a single-member etcd server inside the current process:
// the hub's default store when no external etcd is configured, and the real etcd
// that store tests run against.
//
// # Invariants
//
//   - Start returns only a server that is ready to serve clients (its
//     ReadyNotify fired), or an error and no server: nothing is left listening or
//     running after an error.
//   - A server listens on the addresses its URLs name, loopback by default.
//     Port 0 in a URL means "pick a free port"; the chosen port is the one
//     advertised, so the member list and Endpoints agree. By default neither
//     URL uses a fixed port (not etcd's 2379/2380), and no separate metrics
//     listener is opened (etcd serves /metrics on the client URL), so many
//     servers can run in one process.
//   - Data lives in Options.DataDir: a server restarted on the same directory has
//     the same keys and revisions.
//   - A server always runs with an explicit backend quota and request size
//     limit (etcd's defaults unless Options say otherwise), and compacts its
//     own history only when Options.AutoCompactionRetention is set. This
//     package never compacts, defragments or disarms alarms itself: the
//     hub's maintenance loop (federation/internal/etcdmaint) does, through a
//     client, the same way for an embedded and an external etcd.
//   - etcd's own logs go to a zap logger at "warn" unless Options say otherwise;
//     this package's few lifecycle logs go to the logr logger.
//
// # Who may call it
//
// The hub's main (for the embedded store) and tests. Components that read or
// write the store take a client, never a *Server.
//
// Client TLS (server certificate, optional client-certificate authentication)
// is served when Options.ClientTLS is set; the package never creates or
// rotates certificates, and never enables etcd authentication or roles: the
// caller does both. Peer traffic is never used (one member) and never
// encrypted.
package embedetcd
